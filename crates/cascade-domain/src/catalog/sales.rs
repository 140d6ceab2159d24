//! Sales categories: a seller's store tree (root → parent → leaf).
//!
//! Rules, each a pure function here so the store and the plans engine share them:
//!
//! * A category holds plans **or** sub-categories, never both ([`can_hold_plans`],
//!   [`can_hold_children`]). A category "holds plans" when a plan of the same owner lists
//!   its code among its sales categories.
//! * No cycles: a category is never moved under itself or one of its descendants
//!   ([`check_parent`]).
//! * Siblings have an explicit order. `sort` is the position among siblings (0, 1, 2…);
//!   every insert, move and delete renumbers the affected sibling groups densely
//!   ([`place`]), so the order is stable and never depends on ties. Reads order by
//!   `sort`, then id, which also tolerates rows written by other means.

use super::resources::{Code, NAME_MAX, catalog_id};
use super::text::{Localized, LocalizedInput};
use crate::clock::Timestamp;
use crate::ids::AccountId;
use crate::validation::{FieldError, ValidationErrors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

catalog_id!(SalesCategoryId);

/// Largest accepted position among siblings (positions beyond the end append).
pub const POSITION_MAX: i64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SalesCategory {
    pub id: SalesCategoryId,
    pub owner_account_id: AccountId,
    /// `None`: at the root level of the owner's store.
    pub parent_id: Option<SalesCategoryId>,
    pub code: Code,
    pub name: Localized,
    /// Position among its siblings, from 0.
    pub sort: i32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A validated new sales category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSalesCategory {
    pub parent_id: Option<SalesCategoryId>,
    pub code: Code,
    pub name: Localized,
    /// Where among the siblings; `None` appends at the end.
    pub position: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct SalesCategoryInput {
    pub parent_id: Option<i64>,
    pub code: String,
    pub name: LocalizedInput,
    pub sort: Option<i64>,
}

fn position(errs: &mut ValidationErrors, sort: Option<i64>) -> Option<u32> {
    match sort {
        None => None,
        Some(s) if (0..=POSITION_MAX).contains(&s) => Some(s as u32),
        Some(_) => {
            errs.push(FieldError::new(
                "sort",
                "out_of_range",
                format!("a position among siblings, 0 to {POSITION_MAX}"),
            ));
            None
        }
    }
}

fn localized(errs: &mut ValidationErrors, field: &str, raw: &LocalizedInput) -> Option<Localized> {
    match Localized::parse(raw, NAME_MAX) {
        Ok(l) => Some(l),
        Err(e) => {
            errs.0.extend(e.0.into_iter().map(|x| x.under(field)));
            None
        }
    }
}

impl SalesCategoryInput {
    /// Shape only; the parent's existence, owner and plans are checked against the
    /// stored tree with [`check_parent`] and [`can_hold_children`].
    pub fn validate(&self) -> Result<NewSalesCategory, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let code = errs.check("code", Code::parse(&self.code));
        let name = localized(&mut errs, "name", &self.name);
        let position = position(&mut errs, self.sort);
        errs.into_result()?;
        match (code, name) {
            (Some(code), Some(name)) => Ok(NewSalesCategory {
                parent_id: self.parent_id.map(SalesCategoryId),
                code,
                name,
                position,
            }),
            _ => Err(FieldError::new("", "invalid", "invalid sales category").into()),
        }
    }
}

/// A partial update of the code and name; the place in the tree changes with a move.
#[derive(Debug, Clone, Default)]
pub struct SalesCategoryPatch {
    pub code: Option<String>,
    pub name: Option<LocalizedInput>,
}

impl SalesCategoryPatch {
    pub fn apply(&self, current: &SalesCategory) -> Result<SalesCategory, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let mut next = current.clone();
        if let Some(c) = &self.code
            && let Some(c) = errs.check("code", Code::parse(c))
        {
            next.code = c;
        }
        if let Some(n) = &self.name
            && let Some(n) = localized(&mut errs, "name", n)
        {
            next.name = n;
        }
        errs.into_result().map(|_| next)
    }
}

/// Raw input of a move: the new parent (`None`: root level) and the position there.
#[derive(Debug, Clone)]
pub struct MoveInput {
    pub parent_id: Option<i64>,
    pub sort: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub parent_id: Option<SalesCategoryId>,
    pub position: Option<u32>,
}

impl MoveInput {
    pub fn validate(&self) -> Result<Move, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let position = position(&mut errs, self.sort);
        errs.into_result().map(|_| Move {
            parent_id: self.parent_id.map(SalesCategoryId),
            position,
        })
    }
}

/// A category may list plans only while it has no sub-categories.
pub fn can_hold_plans(has_children: bool) -> bool {
    !has_children
}

/// A category may get sub-categories only while no plan lists it.
pub fn can_hold_children(holds_plans: bool) -> bool {
    !holds_plans
}

/// Check that `category` (`None` for a new one) may be placed under `new_parent`, given
/// the owner's tree as a map id → parent: the parent must be one of the owner's
/// categories, and not the category itself or one of its descendants.
pub fn check_parent(
    category: Option<SalesCategoryId>,
    new_parent: Option<SalesCategoryId>,
    parents: &BTreeMap<SalesCategoryId, Option<SalesCategoryId>>,
) -> Result<(), FieldError> {
    let Some(p) = new_parent else { return Ok(()) };
    if !parents.contains_key(&p) {
        return Err(FieldError::new(
            "parent_id",
            "unknown_parent",
            "no such sales category of the same owner",
        ));
    }
    let Some(me) = category else { return Ok(()) };
    // Walk up from the new parent; meeting `me` means `p` is `me` or below it. The walk
    // is bounded by the number of categories, so a corrupt stored cycle cannot hang it.
    let mut cur = Some(p);
    for _ in 0..=parents.len() {
        match cur {
            None => return Ok(()),
            Some(c) if c == me => {
                return Err(FieldError::new(
                    "parent_id",
                    "category_cycle",
                    "a category cannot be moved under itself or one of its sub-categories",
                ));
            }
            Some(c) => cur = parents.get(&c).copied().flatten(),
        }
    }
    Err(FieldError::new(
        "parent_id",
        "category_cycle",
        "the stored tree has a cycle",
    ))
}

/// Insert `moved` among `siblings` (already ordered, not containing `moved`) at
/// `position` (`None` or beyond the end: last) and number the result 0, 1, 2…
pub fn place(
    siblings: &[SalesCategoryId],
    moved: SalesCategoryId,
    position: Option<u32>,
) -> Vec<(SalesCategoryId, i32)> {
    let mut order: Vec<SalesCategoryId> =
        siblings.iter().copied().filter(|s| *s != moved).collect();
    let at = position
        .map(|p| p as usize)
        .unwrap_or(order.len())
        .min(order.len());
    order.insert(at, moved);
    renumber(&order)
}

/// Dense positions 0, 1, 2… for an ordered sibling list.
pub fn renumber(order: &[SalesCategoryId]) -> Vec<(SalesCategoryId, i32)> {
    order
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i as i32))
        .collect()
}

/// One node of the ordered store tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SalesTreeNode {
    pub category: SalesCategory,
    pub children: Vec<SalesTreeNode>,
}

/// Build the ordered tree of one owner's categories: siblings by `sort`, then id.
/// Categories whose parent is missing (or part of a stored cycle) are not reachable from
/// the root level and are left out.
pub fn build_tree(categories: Vec<SalesCategory>) -> Vec<SalesTreeNode> {
    let mut by_parent: BTreeMap<Option<SalesCategoryId>, Vec<SalesCategory>> = BTreeMap::new();
    for c in categories {
        by_parent.entry(c.parent_id).or_default().push(c);
    }
    for v in by_parent.values_mut() {
        v.sort_by_key(|c| (c.sort, c.id));
    }
    fn level(
        parent: Option<SalesCategoryId>,
        by_parent: &mut BTreeMap<Option<SalesCategoryId>, Vec<SalesCategory>>,
    ) -> Vec<SalesTreeNode> {
        // Each parent's list is taken out once, so a stored cycle cannot recurse forever.
        let Some(list) = by_parent.remove(&parent) else {
            return vec![];
        };
        list.into_iter()
            .map(|c| {
                let children = level(Some(c.id), by_parent);
                SalesTreeNode {
                    category: c,
                    children,
                }
            })
            .collect()
    }
    level(None, &mut by_parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: i64) -> SalesCategoryId {
        SalesCategoryId(n)
    }

    fn cat(n: i64, parent: Option<i64>, sort: i32) -> SalesCategory {
        SalesCategory {
            id: id(n),
            owner_account_id: AccountId(1),
            parent_id: parent.map(id),
            code: Code::parse(&format!("c{n}")).unwrap(),
            name: Localized::new("en", &format!("Category {n}")),
            sort,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    /// 1 ─┬─ 2 ── 4
    ///    └─ 3
    /// 5
    fn tree() -> BTreeMap<SalesCategoryId, Option<SalesCategoryId>> {
        [
            (id(1), None),
            (id(2), Some(id(1))),
            (id(3), Some(id(1))),
            (id(4), Some(id(2))),
            (id(5), None),
        ]
        .into()
    }

    #[test]
    fn cycles_are_refused() {
        let t = tree();
        assert_eq!(
            check_parent(Some(id(1)), Some(id(1)), &t).unwrap_err().code,
            "category_cycle"
        );
        assert_eq!(
            check_parent(Some(id(1)), Some(id(4)), &t).unwrap_err().code,
            "category_cycle"
        );
        assert_eq!(
            check_parent(Some(id(2)), Some(id(4)), &t).unwrap_err().code,
            "category_cycle"
        );
        assert!(check_parent(Some(id(4)), Some(id(3)), &t).is_ok());
        assert!(check_parent(Some(id(2)), Some(id(5)), &t).is_ok());
        assert!(check_parent(Some(id(2)), None, &t).is_ok());
        assert!(check_parent(None, Some(id(4)), &t).is_ok());
        assert_eq!(
            check_parent(None, Some(id(99)), &t).unwrap_err().code,
            "unknown_parent"
        );
        // A corrupt stored cycle does not hang the check.
        let corrupt: BTreeMap<_, _> =
            [(id(1), Some(id(2))), (id(2), Some(id(1))), (id(3), None)].into();
        assert!(check_parent(Some(id(3)), Some(id(1)), &corrupt).is_err());
    }

    #[test]
    fn placing_renumbers_densely() {
        let sib = [id(10), id(11), id(12)];
        assert_eq!(
            place(&sib, id(9), Some(0)),
            vec![(id(9), 0), (id(10), 1), (id(11), 2), (id(12), 3)]
        );
        assert_eq!(
            place(&sib, id(9), Some(2)),
            vec![(id(10), 0), (id(11), 1), (id(9), 2), (id(12), 3)]
        );
        assert_eq!(
            place(&sib, id(9), None),
            vec![(id(10), 0), (id(11), 1), (id(12), 2), (id(9), 3)]
        );
        assert_eq!(place(&sib, id(9), Some(1000)), place(&sib, id(9), None));
        // Moving within the same group: the moved one is taken out first.
        assert_eq!(
            place(&sib, id(12), Some(0)),
            vec![(id(12), 0), (id(10), 1), (id(11), 2)]
        );
        assert_eq!(place(&[], id(1), Some(5)), vec![(id(1), 0)]);
    }

    #[test]
    fn tree_is_ordered_by_sort_then_id() {
        let nodes = build_tree(vec![
            cat(3, Some(1), 0),
            cat(1, None, 1),
            cat(2, Some(1), 0),
            cat(5, None, 0),
            cat(4, Some(2), 0),
            cat(9, Some(77), 0),
        ]);
        let shape: Vec<(i64, Vec<i64>)> = nodes
            .iter()
            .map(|n| {
                (
                    n.category.id.0,
                    n.children.iter().map(|c| c.category.id.0).collect(),
                )
            })
            .collect();
        assert_eq!(shape, vec![(5, vec![]), (1, vec![2, 3])]);
        assert_eq!(nodes[1].children[0].children[0].category.id, id(4));
    }

    #[test]
    fn plans_or_children_never_both() {
        assert!(can_hold_plans(false));
        assert!(!can_hold_plans(true));
        assert!(can_hold_children(false));
        assert!(!can_hold_children(true));
    }

    #[test]
    fn input_validation() {
        let input = SalesCategoryInput {
            parent_id: Some(3),
            code: "office suites".into(),
            name: LocalizedInput {
                default: "en".into(),
                values: [("en".to_string(), "x".repeat(NAME_MAX + 1))].into(),
            },
            sort: Some(-1),
        };
        let e = input.validate().unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            fields,
            vec![
                ("code", "invalid_code"),
                ("name.values.en", "too_long"),
                ("sort", "out_of_range")
            ]
        );
        let ok = SalesCategoryInput {
            code: "office".into(),
            name: LocalizedInput::from(&Localized::new("en", "Office")),
            sort: None,
            parent_id: None,
        }
        .validate()
        .unwrap();
        assert_eq!((ok.position, ok.parent_id), (None, None));
        assert_eq!(
            MoveInput {
                parent_id: None,
                sort: Some(POSITION_MAX + 1)
            }
            .validate()
            .unwrap_err()
            .0[0]
                .field,
            "sort"
        );
    }
}
