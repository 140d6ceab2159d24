//! Money documents as PDF: the invoice a customer files, the receipt of a payment, a
//! credit or debit memo, a refund.
//!
//! Written with `pdf-writer` (small, no system libraries) using the PDF base-14 fonts
//! Helvetica and Helvetica-Bold, which every PDF reader has: nothing is downloaded or
//! embedded, and the output is deterministic (same document, same bytes). The price of
//! the base-14 fonts is their character set, WinAnsi (Latin-1 plus a few typographic
//! signs such as € – — “ ”): other characters print as `?`. Text is positioned with the
//! fonts' standard metrics (below), so amounts right-align exactly; content streams are
//! left uncompressed, so the document's text is searchable in the raw bytes too.
//!
//! Layout is a two-pass affair: [`layout`] places every element on A4 pages (breaking
//! the line table over as many pages as needed, repeating its header), then the pages
//! are written with their "page i of n" footers.

use cascade_domain::account::Account;
use cascade_domain::billing::amounts::ROUNDING_RULE;
use cascade_domain::money::Currency;
use cascade_store::documents::{Document, Line};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

/// One party of a document (seller or buyer), as printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PdfParty {
    pub name: String,
    /// Address lines, postal code and city, country.
    pub address: Vec<String>,
    pub tax_id: Option<String>,
    pub email: Option<String>,
}

impl PdfParty {
    pub fn of(a: &Account) -> PdfParty {
        let c = &a.contact;
        let mut address: Vec<String> = [c.address_line1.clone(), c.address_line2.clone()]
            .into_iter()
            .flatten()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let city = [c.postal_code.as_deref(), c.city.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !city.is_empty() {
            address.push(city);
        }
        address.push(a.country.as_str().to_string());
        PdfParty {
            name: a.name.clone(),
            address,
            tax_id: c.tax_id.clone().filter(|t| !t.trim().is_empty()),
            email: c.email.as_ref().map(|e| e.as_str().to_string()),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfLine {
    pub description: String,
    /// `2024-01-01 to 2024-02-01`, for lines that bill a period.
    pub period: Option<String>,
    pub quantity: String,
    pub unit_price: String,
    pub amount: String,
}

/// Everything printed on a document, already formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfDocument {
    /// `Invoice`, `Credit memo`, …
    pub title: String,
    pub number: String,
    pub issue_date: Option<String>,
    pub due_date: Option<String>,
    pub charge_date: Option<String>,
    pub currency: String,
    pub seller: PdfParty,
    pub buyer: PdfParty,
    pub lines: Vec<PdfLine>,
    pub subtotal: String,
    /// `Tax (19%)`.
    pub tax_label: String,
    pub tax: String,
    pub total: String,
    /// `Paid` (what the customer owes) or `Applied` (what the customer has to spend).
    pub settled_label: String,
    pub settled: String,
    /// `Amount due` or `Open to apply`.
    pub open_label: String,
    pub open: String,
    /// Sentences under the totals: payment terms, method, the rounding rule.
    pub notes: Vec<String>,
}

/// An amount in minor units as a plain decimal (`-12.05`), without the currency code.
pub fn format_minor(minor: i64, currency: Currency) -> String {
    let digits = currency.minor_digits();
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = digits as usize
    )
}

/// A unit price in millionths, with at least the currency's decimals and at most six
/// (`12.345`, `10.00`, `0.000125`).
pub fn format_micro(micro: i64, currency: Currency) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let abs = micro.unsigned_abs();
    let mut frac = format!("{:06}", abs % 1_000_000);
    let keep = currency.minor_digits().min(6) as usize;
    while frac.len() > keep && frac.ends_with('0') {
        frac.pop();
    }
    if frac.is_empty() {
        format!("{sign}{}", abs / 1_000_000)
    } else {
        format!("{sign}{}.{frac}", abs / 1_000_000)
    }
}

/// A tax rate in basis points as a percentage (`19%`, `7.25%`).
pub fn format_rate(bp: i64) -> String {
    let whole = bp / 100;
    let frac = (bp % 100).abs();
    match frac {
        0 => format!("{whole}%"),
        f if f % 10 == 0 => format!("{whole}.{}%", f / 10),
        f => format!("{whole}.{f:02}%"),
    }
}

impl PdfDocument {
    /// The printable form of a stored document, issued by `seller` to `buyer`.
    pub fn build(doc: &Document, lines: &[Line], seller: &Account, buyer: &Account) -> PdfDocument {
        let currency = Currency::parse(&doc.currency).unwrap_or(seller.currency);
        let m = |v: i64| format_minor(v, currency);
        let debit = doc.kind.is_debit();
        let mut notes = Vec::new();
        if debit {
            match (&doc.due_date, doc.open_minor) {
                (_, 0) => notes.push("Paid in full. Thank you.".to_string()),
                (Some(due), open) => notes.push(format!(
                    "Please pay {} {} by {due}, quoting {}.",
                    m(open),
                    doc.currency,
                    doc.number.as_deref().unwrap_or("this number")
                )),
                (None, open) => notes.push(format!("Amount due: {} {}.", m(open), doc.currency)),
            }
            if let Some(c) = &doc.charge_date {
                notes.push(format!(
                    "Under your payment terms the amount is charged automatically on {c}."
                ));
            }
        }
        if let Some(method) = &doc.method {
            let label = cascade_domain::billing::payments::PaymentMethod::parse(method)
                .map(|p| p.label())
                .unwrap_or(method.as_str());
            let reference = doc
                .external_ref
                .as_deref()
                .map(|r| format!(", reference {r}"))
                .unwrap_or_default();
            notes.push(format!("Payment method: {label}{reference}."));
        }
        notes.push(format!(
            "All amounts are in {}. Rounding: {ROUNDING_RULE}.",
            doc.currency
        ));
        PdfDocument {
            title: doc.kind.title().to_string(),
            number: doc.number.clone().unwrap_or_else(|| format!("#{}", doc.id)),
            issue_date: doc.issue_date.clone(),
            due_date: if debit { doc.due_date.clone() } else { None },
            charge_date: doc.charge_date.clone(),
            currency: doc.currency.clone(),
            seller: PdfParty::of(seller),
            buyer: PdfParty::of(buyer),
            lines: lines
                .iter()
                .map(|l| PdfLine {
                    description: l.description.clone(),
                    period: match (&l.period_start, &l.period_end) {
                        (Some(s), Some(e)) => Some(format!("{s} to {e}")),
                        (Some(s), None) => Some(format!("from {s}")),
                        _ => None,
                    },
                    quantity: l.quantity.to_string(),
                    unit_price: format_micro(l.unit_price_micro, currency),
                    amount: m(l.amount_minor),
                })
                .collect(),
            subtotal: m(doc.subtotal_minor),
            tax_label: match doc.tax_bp {
                Some(bp) => format!("Tax ({})", format_rate(bp)),
                None => "Tax".into(),
            },
            tax: m(doc.tax_minor),
            total: m(doc.total_minor),
            settled_label: if debit { "Paid" } else { "Applied" }.into(),
            settled: m(doc.total_minor - doc.open_minor),
            open_label: if debit { "Amount due" } else { "Open to apply" }.into(),
            open: m(doc.open_minor),
            notes,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fonts: WinAnsi encoding and the standard metrics of Helvetica / Helvetica-Bold
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
}

impl Font {
    fn name(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"F1"),
            Font::Bold => Name(b"F2"),
        }
    }
}

/// Advance widths (1/1000 em) of ASCII 32..=126 in Helvetica (Adobe's AFM).
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
    278, // space … /
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0 … ?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722,
    778, // @ … O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P … _
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // ` … o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p … ~
];

/// Advance widths of ASCII 32..=126 in Helvetica-Bold.
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278,
    278, // space … /
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, // 0 … ?
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, // @ … O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, // P … _
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, // ` … o
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, // p … ~
];

/// Text in the fonts' WinAnsi encoding; characters outside it become `?`.
fn winansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '‚' => 0x82,
            '„' => 0x84,
            '…' => 0x85,
            '‰' => 0x89,
            'Š' => 0x8a,
            'Œ' => 0x8c,
            'Ž' => 0x8e,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '™' => 0x99,
            'š' => 0x9a,
            'œ' => 0x9c,
            'ž' => 0x9e,
            'Ÿ' => 0x9f,
            c if c.is_control() => b' ',
            _ => b'?',
        })
        .collect()
}

fn byte_width(font: Font, b: u8) -> u16 {
    let table = match font {
        Font::Regular => &HELVETICA,
        Font::Bold => &HELVETICA_BOLD,
    };
    match b {
        32..=126 => table[usize::from(b - 32)],
        0x95 => 350,
        0x96 => 556,
        0x97 | 0x89 => 1000,
        _ => 556,
    }
}

fn text_width(font: Font, size: f32, text: &[u8]) -> f32 {
    text.iter()
        .map(|b| f32::from(byte_width(font, *b)))
        .sum::<f32>()
        * size
        / 1000.0
}

/// Break `text` into lines no wider than `width`, at spaces (hard breaks inside words
/// that are too long on their own).
fn wrap(font: Font, size: f32, text: &str, width: f32) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for word in text.split_whitespace().map(winansi) {
        let candidate_len = if cur.is_empty() {
            word.len()
        } else {
            cur.len() + 1 + word.len()
        };
        let mut candidate = Vec::with_capacity(candidate_len);
        if !cur.is_empty() {
            candidate.extend_from_slice(&cur);
            candidate.push(b' ');
        }
        candidate.extend_from_slice(&word);
        if text_width(font, size, &candidate) <= width {
            cur = candidate;
            continue;
        }
        if !cur.is_empty() {
            lines.push(std::mem::take(&mut cur));
        }
        let mut w = word;
        while text_width(font, size, &w) > width && w.len() > 1 {
            let mut n = w.len();
            while n > 1 && text_width(font, size, &w[..n]) > width {
                n -= 1;
            }
            lines.push(w[..n].to_vec());
            w = w[n..].to_vec();
        }
        cur = w;
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

// ---------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const LEFT: f32 = 50.0;
const RIGHT: f32 = PAGE_W - 50.0;
const TOP: f32 = PAGE_H - 50.0;
/// Nothing but the footer goes below this line.
const BOTTOM: f32 = 70.0;

// Table columns: description on the left, then right-aligned numbers.
const COL_DESC_W: f32 = 270.0;
const COL_QTY_R: f32 = 380.0;
const COL_UNIT_R: f32 = 465.0;
const COL_AMOUNT_R: f32 = RIGHT;

#[derive(Debug, Clone)]
enum Op {
    Text {
        x: f32,
        y: f32,
        font: Font,
        size: f32,
        gray: f32,
        text: Vec<u8>,
    },
    Rule {
        x1: f32,
        x2: f32,
        y: f32,
        width: f32,
        gray: f32,
    },
    Band {
        y: f32,
        h: f32,
        gray: f32,
    },
}

#[derive(Default)]
struct Page {
    ops: Vec<Op>,
}

impl Page {
    fn text(&mut self, x: f32, y: f32, font: Font, size: f32, s: &str) {
        self.ops.push(Op::Text {
            x,
            y,
            font,
            size,
            gray: 0.0,
            text: winansi(s),
        });
    }
    fn gray_text(&mut self, x: f32, y: f32, font: Font, size: f32, gray: f32, s: &str) {
        self.ops.push(Op::Text {
            x,
            y,
            font,
            size,
            gray,
            text: winansi(s),
        });
    }
    fn right(&mut self, right: f32, y: f32, font: Font, size: f32, s: &str) {
        let t = winansi(s);
        let x = right - text_width(font, size, &t);
        self.ops.push(Op::Text {
            x,
            y,
            font,
            size,
            gray: 0.0,
            text: t,
        });
    }
    fn raw(&mut self, x: f32, y: f32, font: Font, size: f32, gray: f32, t: Vec<u8>) {
        self.ops.push(Op::Text {
            x,
            y,
            font,
            size,
            gray,
            text: t,
        });
    }
    fn rule(&mut self, x1: f32, x2: f32, y: f32, width: f32, gray: f32) {
        self.ops.push(Op::Rule {
            x1,
            x2,
            y,
            width,
            gray,
        });
    }
}

/// A party block at (`x`, `y`); returns the y below it.
fn party(
    page: &mut Page,
    x: f32,
    mut y: f32,
    heading: Option<&str>,
    p: &PdfParty,
    name_size: f32,
) -> f32 {
    if let Some(h) = heading {
        page.gray_text(x, y, Font::Bold, 8.5, 0.4, h);
        y -= 13.0;
    }
    for line in wrap(Font::Bold, name_size, &p.name, 260.0) {
        page.raw(x, y, Font::Bold, name_size, 0.0, line);
        y -= name_size + 3.0;
    }
    y -= 1.0;
    for l in &p.address {
        page.text(x, y, Font::Regular, 9.5, l);
        y -= 12.0;
    }
    if let Some(t) = &p.tax_id {
        page.text(x, y, Font::Regular, 9.5, &format!("Tax ID: {t}"));
        y -= 12.0;
    }
    if let Some(e) = &p.email {
        page.text(x, y, Font::Regular, 9.5, e);
        y -= 12.0;
    }
    y
}

fn table_header(page: &mut Page, y: f32) -> f32 {
    page.ops.push(Op::Band {
        y: y - 5.0,
        h: 17.0,
        gray: 0.92,
    });
    page.text(LEFT + 4.0, y, Font::Bold, 9.0, "Description");
    page.right(COL_QTY_R, y, Font::Bold, 9.0, "Qty");
    page.right(COL_UNIT_R, y, Font::Bold, 9.0, "Unit price");
    page.right(COL_AMOUNT_R - 4.0, y, Font::Bold, 9.0, "Amount");
    y - 20.0
}

/// Place every element of `d` on pages.
fn layout(d: &PdfDocument) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut page = Page::default();

    // Head: seller on the left, title and references on the right.
    let seller_bottom = party(&mut page, LEFT, TOP - 4.0, None, &d.seller, 14.0);
    page.right(RIGHT, TOP - 6.0, Font::Bold, 22.0, &d.title.to_uppercase());
    let mut y = TOP - 30.0;
    let meta: Vec<(&str, Option<&String>)> = vec![
        ("Number", Some(&d.number)),
        ("Issue date", d.issue_date.as_ref()),
        ("Due date", d.due_date.as_ref()),
        ("Charge date", d.charge_date.as_ref()),
        ("Currency", Some(&d.currency)),
    ];
    for (label, value) in meta {
        if let Some(v) = value {
            page.gray_text(RIGHT - 170.0, y, Font::Regular, 9.5, 0.35, label);
            page.right(RIGHT, y, Font::Bold, 9.5, v);
            y -= 13.0;
        }
    }
    let mut y = seller_bottom.min(y) - 18.0;
    y = party(
        &mut page,
        LEFT,
        y,
        Some(if d.title == "Invoice" {
            "BILL TO"
        } else {
            "CUSTOMER"
        }),
        &d.buyer,
        11.0,
    );
    y -= 16.0;

    // The line table, over as many pages as it takes.
    y = table_header(&mut page, y);
    for l in &d.lines {
        let desc = wrap(Font::Regular, 9.5, &l.description, COL_DESC_W);
        // Baselines: description lines 12 apart, the period 11 below, a rule 6 below the
        // last baseline, and the next row 14 below the rule.
        let height =
            (desc.len() as f32 - 1.0) * 12.0 + if l.period.is_some() { 11.0 } else { 0.0 } + 20.0;
        if y - height < BOTTOM {
            pages.push(std::mem::take(&mut page));
            y = TOP;
            page.text(
                LEFT,
                y,
                Font::Bold,
                11.0,
                &format!("{} {} (continued)", d.title, d.number),
            );
            y = table_header(&mut page, y - 24.0);
        }
        page.right(COL_QTY_R, y, Font::Regular, 9.5, &l.quantity);
        page.right(COL_UNIT_R, y, Font::Regular, 9.5, &l.unit_price);
        page.right(COL_AMOUNT_R - 4.0, y, Font::Regular, 9.5, &l.amount);
        let rows = desc.len();
        for (i, text) in desc.into_iter().enumerate() {
            page.raw(
                LEFT + 4.0,
                y - i as f32 * 12.0,
                Font::Regular,
                9.5,
                0.0,
                text,
            );
        }
        let mut last = y - (rows as f32 - 1.0) * 12.0;
        if let Some(p) = &l.period {
            last -= 11.0;
            page.gray_text(
                LEFT + 4.0,
                last,
                Font::Regular,
                8.0,
                0.4,
                &format!("Period: {p}"),
            );
        }
        page.rule(LEFT, RIGHT, last - 6.0, 0.3, 0.8);
        y -= height;
    }

    // Totals and notes stay together.
    let notes: Vec<Vec<u8>> = d
        .notes
        .iter()
        .flat_map(|n| wrap(Font::Regular, 8.5, n, RIGHT - LEFT))
        .collect();
    let needed = 6.0 * 15.0 + 24.0 + notes.len() as f32 * 11.0;
    if y - needed < BOTTOM {
        pages.push(std::mem::take(&mut page));
        y = TOP;
        page.text(
            LEFT,
            y,
            Font::Bold,
            11.0,
            &format!("{} {} (continued)", d.title, d.number),
        );
        y -= 30.0;
    }
    y -= 8.0;
    let label_x = RIGHT - 200.0;
    let rows: [(&str, &str, bool); 3] = [
        ("Subtotal", &d.subtotal, false),
        (&d.tax_label, &d.tax, false),
        ("Total", &d.total, true),
    ];
    for (label, value, strong) in rows {
        if strong {
            page.rule(label_x, RIGHT, y + 11.0, 0.8, 0.0);
        }
        let font = if strong { Font::Bold } else { Font::Regular };
        page.text(label_x, y, font, 10.0, label);
        page.right(RIGHT, y, font, 10.0, &format!("{value} {}", d.currency));
        y -= 15.0;
    }
    page.text(label_x, y, Font::Regular, 10.0, &d.settled_label);
    page.right(
        RIGHT,
        y,
        Font::Regular,
        10.0,
        &format!("{} {}", d.settled, d.currency),
    );
    y -= 17.0;
    page.ops.push(Op::Band {
        y: y - 5.0,
        h: 18.0,
        gray: 0.92,
    });
    page.text(label_x + 4.0, y, Font::Bold, 11.0, &d.open_label);
    page.right(
        RIGHT - 4.0,
        y,
        Font::Bold,
        11.0,
        &format!("{} {}", d.open, d.currency),
    );
    y -= 32.0;
    for n in notes {
        page.raw(LEFT, y, Font::Regular, 8.5, 0.25, n);
        y -= 11.0;
    }
    pages.push(page);
    pages
}

/// The document as PDF bytes.
pub fn render(d: &PdfDocument) -> Vec<u8> {
    let mut pages = layout(d);
    let n = pages.len();
    for (i, p) in pages.iter_mut().enumerate() {
        p.rule(LEFT, RIGHT, 48.0, 0.3, 0.7);
        p.gray_text(
            LEFT,
            36.0,
            Font::Regular,
            8.0,
            0.4,
            &format!("{} {} - {}", d.title, d.number, d.seller.name),
        );
        let t = winansi(&format!("Page {} of {n}", i + 1));
        let x = RIGHT - text_width(Font::Regular, 8.0, &t);
        p.raw(x, 36.0, Font::Regular, 8.0, 0.4, t);
    }

    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    let page_ids: Vec<(Ref, Ref)> = (0..n as i32)
        .map(|i| (Ref::new(10 + 2 * i), Ref::new(11 + 2 * i)))
        .collect();
    pdf.pages(tree)
        .kids(page_ids.iter().map(|p| p.0))
        .count(n as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    let title = format!("{} {}", d.title, d.number);
    pdf.document_info(info)
        .title(TextStr(&title))
        .author(TextStr(&d.seller.name))
        .producer(TextStr("Cascade"));
    for (page, (page_id, content_id)) in pages.iter().zip(&page_ids) {
        let mut p = pdf.page(*page_id);
        p.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        p.parent(tree);
        p.contents(*content_id);
        let mut res = p.resources();
        res.fonts()
            .pair(Font::Regular.name(), regular)
            .pair(Font::Bold.name(), bold);
        res.finish();
        p.finish();
        let content = draw(page);
        pdf.stream(*content_id, &content);
    }
    pdf.finish()
}

fn draw(page: &Page) -> Vec<u8> {
    let mut c = Content::new();
    for op in &page.ops {
        match op {
            Op::Band { y, h, gray } => {
                c.set_fill_gray(*gray);
                c.rect(LEFT, *y, RIGHT - LEFT, *h);
                c.fill_nonzero();
                c.set_fill_gray(0.0);
            }
            Op::Rule {
                x1,
                x2,
                y,
                width,
                gray,
            } => {
                c.set_stroke_gray(*gray);
                c.set_line_width(*width);
                c.move_to(*x1, *y);
                c.line_to(*x2, *y);
                c.stroke();
            }
            Op::Text {
                x,
                y,
                font,
                size,
                gray,
                text,
            } => {
                c.set_fill_gray(*gray);
                c.begin_text();
                c.set_font(font.name(), *size);
                c.next_line(*x, *y);
                c.show(Str(text));
                c.end_text();
                c.set_fill_gray(0.0);
            }
        }
    }
    c.finish().into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn sample(lines: usize) -> PdfDocument {
        let party = |n: &str| PdfParty {
            name: n.into(),
            address: vec!["Hauptstraße 1".into(), "10115 Berlin".into(), "DE".into()],
            tax_id: Some("DE123456789".into()),
            email: Some("billing@example.com".into()),
        };
        PdfDocument {
            title: "Invoice".into(),
            number: "INV-000042".into(),
            issue_date: Some("2024-01-31".into()),
            due_date: Some("2024-02-14".into()),
            charge_date: None,
            currency: "EUR".into(),
            seller: party("Northwind Cloud GmbH"),
            buyer: party("Müller & Söhne (Köln)"),
            lines: (0..lines)
                .map(|i| PdfLine {
                    description: format!("Office Suite — seats, line {i}, with a description long enough to wrap onto a second line of the table"),
                    period: Some("2024-01-01 to 2024-02-01".into()),
                    quantity: "3".into(),
                    unit_price: "12.345".into(),
                    amount: "37.04".into(),
                })
                .collect(),
            subtotal: "100.00".into(),
            tax_label: "Tax (19%)".into(),
            tax: "19.00".into(),
            total: "119.00".into(),
            settled_label: "Paid".into(),
            settled: "0.00".into(),
            open_label: "Amount due".into(),
            open: "119.00".into(),
            notes: vec![format!("Rounding: {ROUNDING_RULE}.")],
        }
    }

    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    #[test]
    fn amounts_and_prices_are_formatted_exactly() {
        assert_eq!(format_minor(-1205, eur()), "-12.05");
        assert_eq!(format_minor(5, eur()), "0.05");
        assert_eq!(format_minor(1500, Currency::parse("JPY").unwrap()), "1500");
        assert_eq!(format_minor(7, Currency::parse("KWD").unwrap()), "0.007");
        assert_eq!(format_micro(12_345_000, eur()), "12.345");
        assert_eq!(format_micro(10_000_000, eur()), "10.00");
        assert_eq!(format_micro(125, eur()), "0.000125");
        assert_eq!(format_micro(-2_500_000, eur()), "-2.50");
        assert_eq!(
            format_micro(3_000_000, Currency::parse("JPY").unwrap()),
            "3"
        );
        assert_eq!(format_rate(1900), "19%");
        assert_eq!(format_rate(725), "7.25%");
        assert_eq!(format_rate(1950), "19.5%");
    }

    #[test]
    fn a_pdf_with_the_invoice_text() {
        let bytes = render(&sample(2));
        assert!(bytes.starts_with(b"%PDF-"));
        assert!(bytes.ends_with(b"%%EOF") || bytes.ends_with(b"%%EOF\n"));
        for needle in [
            &b"(INV-000042)"[..],
            b"(119.00 EUR)",
            b"(Tax (19%))",
            b"(Amount due)",
            b"/Helvetica-Bold",
            b"/WinAnsiEncoding",
        ] {
            assert!(
                count(&bytes, needle) > 0,
                "missing {}",
                String::from_utf8_lossy(needle)
            );
        }
        assert_eq!(count(&bytes, b"/Type /Page\n"), 1);
        // Deterministic: the same document gives the same bytes.
        assert_eq!(bytes, render(&sample(2)));
    }

    #[test]
    fn long_tables_break_over_pages() {
        let bytes = render(&sample(60));
        let pages = count(&bytes, b"/Type /Page\n");
        assert!(pages >= 3, "{pages} pages");
        assert!(count(&bytes, format!("(Page {pages} of {pages})").as_bytes()) == 1);
        assert!(
            count(&bytes, b"(Description)") == pages,
            "the table header repeats on every page"
        );
    }

    #[test]
    fn text_outside_winansi_is_replaced() {
        assert_eq!(
            winansi("€5 – Café"),
            vec![0x80, b'5', b' ', 0x96, b' ', b'C', b'a', b'f', 0xe9]
        );
        assert_eq!(winansi("حزمة"), b"????".to_vec());
    }

    #[test]
    fn wrapping_respects_the_width() {
        let lines = wrap(
            Font::Regular,
            10.0,
            "a few words that do not fit on one short line",
            80.0,
        );
        assert!(lines.len() > 2);
        for l in &lines {
            assert!(text_width(Font::Regular, 10.0, l) <= 80.0);
        }
        let hard = wrap(Font::Regular, 10.0, &"W".repeat(50), 80.0);
        assert!(
            hard.len() > 1
                && hard
                    .iter()
                    .all(|l| text_width(Font::Regular, 10.0, l) <= 80.0)
        );
        assert_eq!(wrap(Font::Regular, 10.0, "", 80.0), vec![Vec::<u8>::new()]);
    }
}
