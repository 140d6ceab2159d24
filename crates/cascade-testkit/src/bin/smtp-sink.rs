//! `smtp-sink`: a tiny SMTP server for tests. It accepts every message and writes each
//! one as a JSON file (`from`, `to`, `subject`, `text`, `html`, `raw`) in a directory,
//! so a test can start it as a real process, point Cascade at it, and assert what was
//! received. Not a mail server: no relaying, no authentication, no TLS.
//!
//! Usage: `smtp-sink --listen 127.0.0.1:0 --dir DIR`. Once listening it prints
//! `listening 127.0.0.1:PORT` on stdout (the line a test waits for).
//!
//! Threads and blocking sockets rather than tokio: a test sink has a handful of
//! connections, and this keeps it obviously correct. Received messages are parsed with
//! `mail-parser` (MIME, encoded-word subjects in any charset) so assertions compare the
//! text a reader sees, not its transfer encoding.

use mail_parser::MimeHeaders;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(serde::Serialize)]
struct Received<'a> {
    from: &'a str,
    to: &'a [String],
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    raw: &'a str,
}

fn main() {
    let mut listen = "127.0.0.1:0".to_string();
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            "--dir" => dir = Some(PathBuf::from(args.next().expect("--dir DIR"))),
            other => {
                eprintln!(
                    "smtp-sink: unknown argument {other}; usage: smtp-sink --listen ADDR --dir DIR"
                );
                std::process::exit(2);
            }
        }
    }
    let dir = Arc::new(dir.unwrap_or_else(|| {
        eprintln!("smtp-sink: --dir DIR is required");
        std::process::exit(2)
    }));
    std::fs::create_dir_all(&*dir).expect("create the message directory");
    let listener = TcpListener::bind(&listen).unwrap_or_else(|e| {
        eprintln!("smtp-sink: cannot listen on {listen}: {e}");
        std::process::exit(1)
    });
    println!(
        "listening {}",
        listener.local_addr().expect("local address")
    );
    std::io::stdout().flush().ok();
    let seq = Arc::new(AtomicU64::new(0));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let (dir, seq) = (dir.clone(), seq.clone());
        std::thread::spawn(move || {
            if let Err(e) = session(conn, &dir, &seq) {
                eprintln!("smtp-sink: session ended: {e}");
            }
        });
    }
}

fn session(conn: TcpStream, dir: &Path, seq: &AtomicU64) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut input = BufReader::new(conn);
    out.write_all(b"220 smtp-sink ESMTP\r\n")?;
    let mut from = String::new();
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            out.write_all(b"250-smtp-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")?;
        } else if upper.starts_with("HELO") {
            out.write_all(b"250 smtp-sink\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&cmd[10..]);
            to.clear();
            out.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&cmd[8..]));
            out.write_all(b"250 OK\r\n")?;
        } else if upper == "DATA" {
            out.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
            let mut raw = String::new();
            loop {
                line.clear();
                if input.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                // Dot-unstuffing (RFC 5321 §4.5.2).
                raw.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            store(dir, seq, &from, &to, &raw)?;
            out.write_all(b"250 OK queued\r\n")?;
        } else if upper == "RSET" || upper == "NOOP" {
            out.write_all(b"250 OK\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"502 command not implemented\r\n")?;
        }
    }
}

/// `<a@b>` (with optional parameters after it) → `a@b`.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_string(),
        _ => arg.split_whitespace().next().unwrap_or("").to_string(),
    }
}

fn store(dir: &Path, seq: &AtomicU64, from: &str, to: &[String], raw: &str) -> std::io::Result<()> {
    let parsed = mail_parser::MessageParser::default().parse(raw.as_bytes());
    let rec = Received {
        from,
        to,
        subject: parsed
            .as_ref()
            .and_then(|m| m.subject().map(str::to_string)),
        text: parsed
            .as_ref()
            .and_then(|m| m.body_text(0).map(|t| t.replace("\r\n", "\n"))),
        // Only a real text/html part (the parser would otherwise derive HTML from text).
        html: parsed.as_ref().and_then(|m| {
            m.parts
                .iter()
                .find(|p| {
                    p.content_type().is_some_and(|c| {
                        c.ctype().eq_ignore_ascii_case("text")
                            && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("html"))
                    })
                })
                .and_then(|p| p.text_contents().map(str::to_string))
        }),
        raw,
    };
    let n = seq.fetch_add(1, Ordering::SeqCst);
    let name = format!("{:06}-{}.json", n, std::process::id());
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&rec).map_err(std::io::Error::other)?,
    )?;
    // Rename: a reader never sees a half-written file.
    std::fs::rename(tmp, dir.join(name))
}
