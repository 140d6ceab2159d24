//! Catalog reads of the panels and the store, cached in-process (issue 5).
//!
//! A marketplace page needs the seller's sales tree and every plan it has on sale (each
//! parsed from its JSON content); the customer home needs the name of each
//! subscription's plan. These change rarely and are read on every page, so they are kept
//! in [`moka`] caches (the crate the session cache uses), keyed by seller or plan id.
//!
//! **Staleness bound.** An entry is used only while it is younger than the time-to-live
//! (`HttpConfig::catalog_cache_ttl_ms`, default 5 s; 0 turns the cache off) and no
//! plan or sales category was written *in this process* since it was read: every store
//! function writing them bumps `cascade_store::plans::catalog_generation`, and older
//! entries are discarded. Writes by other processes (a separately run worker's plan
//! sync, another server) show within the time-to-live.
//!
//! The billing screens a customer's sellers let it see (`billing_visibility`, read by
//! every panel page's context) are kept the same way, per account, under their own
//! generation (`cascade_store::billing_visibility::visibility_generation`, bumped when
//! a seller changes its choice).
//!
//! Only display reads go through here. Ordering re-reads the plan from the database
//! (prices, whether it is still on sale), so a stale entry can at worst show a plan for
//! a few seconds that the order then refuses.

use cascade_domain::billing::visibility::BillingScreens;
use cascade_domain::catalog::sales::SalesTreeNode;
use cascade_store::billing_visibility::visibility_generation;
use cascade_store::plans::{Plan, catalog_generation};
use cascade_store::{Db, StoreResult};
use moka::sync::Cache;
use std::sync::Arc;
use std::time::Duration;

struct Entry<T> {
    /// `catalog_generation()` before the entry was read.
    generation: u64,
    value: Arc<T>,
}

// Not derived: a derive would ask `T: Clone`, and only the `Arc` is cloned.
impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Self {
            generation: self.generation,
            value: self.value.clone(),
        }
    }
}

/// The panels' catalog caches (see the module documentation).
pub struct CatalogCache {
    on_sale: Option<Cache<i64, Entry<Vec<Plan>>>>,
    trees: Option<Cache<i64, Entry<Vec<SalesTreeNode>>>>,
    plans: Option<Cache<i64, Entry<Plan>>>,
    screens: Option<Cache<i64, Entry<BillingScreens>>>,
}

impl std::fmt::Debug for CatalogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogCache")
            .field("enabled", &self.plans.is_some())
            .finish_non_exhaustive()
    }
}

fn build<T: Send + Sync + 'static>(ttl: Duration, capacity: u64) -> Option<Cache<i64, Entry<T>>> {
    (!ttl.is_zero()).then(|| {
        Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .build()
    })
}

async fn cached<T, F>(
    cache: &Option<Cache<i64, Entry<T>>>,
    key: i64,
    load: F,
) -> StoreResult<Arc<T>>
where
    T: Send + Sync + 'static,
    F: AsyncFnOnce() -> StoreResult<T>,
{
    cached_at(cache, key, catalog_generation(), load).await
}

/// [`cached`] under an explicit generation (read before the load).
async fn cached_at<T, F>(
    cache: &Option<Cache<i64, Entry<T>>>,
    key: i64,
    generation: u64,
    load: F,
) -> StoreResult<Arc<T>>
where
    T: Send + Sync + 'static,
    F: AsyncFnOnce() -> StoreResult<T>,
{
    if let Some(c) = cache
        && let Some(e) = c.get(&key)
        && e.generation == generation
    {
        return Ok(e.value);
    }
    let value = Arc::new(load().await?);
    if let Some(c) = cache {
        c.insert(
            key,
            Entry {
                generation,
                value: value.clone(),
            },
        );
    }
    Ok(value)
}

impl CatalogCache {
    /// Caches whose entries live at most `ttl` (zero: no caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            on_sale: build(ttl, 10_000),
            trees: build(ttl, 10_000),
            plans: build(ttl, 100_000),
            screens: build(ttl, 100_000),
        }
    }

    /// The plans `seller` has on sale, in listing order.
    pub async fn plans_on_sale(&self, db: &Db, seller: i64) -> StoreResult<Arc<Vec<Plan>>> {
        cached(&self.on_sale, seller, async || {
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let page = db
                    .plans()
                    .of_owner(cascade_domain::ids::AccountId(seller), true, after, 200)
                    .await?;
                out.extend(page.items.into_iter().filter(Plan::on_sale));
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            out.sort_by_key(|p| (p.content.listing_priority, p.id));
            Ok(out)
        })
        .await
    }

    /// The ordered sales tree of `owner`.
    pub async fn tree(&self, db: &Db, owner: i64) -> StoreResult<Arc<Vec<SalesTreeNode>>> {
        cached(&self.trees, owner, async || {
            db.sales_categories()
                .tree(cascade_domain::ids::AccountId(owner))
                .await
        })
        .await
    }

    /// The billing screens `account`'s sellers let it see (what a customer's pages show).
    pub async fn billing_screens(&self, db: &Db, account: i64) -> StoreResult<BillingScreens> {
        let generation = visibility_generation();
        let r = cached_at(&self.screens, account, generation, async || {
            Ok(db
                .billing_visibility()
                .effective(cascade_domain::ids::AccountId(account))
                .await?
                .screens)
        })
        .await?;
        Ok(*r)
    }

    /// One plan, for display.
    pub async fn plan(&self, db: &Db, id: i64) -> StoreResult<Arc<Plan>> {
        cached(&self.plans, id, async || db.plans().get(id).await).await
    }
}
