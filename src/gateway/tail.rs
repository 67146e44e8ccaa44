//! `helsemelding tail`: follow the routing log in a readable form (one line per decision).
//!
//! Reads the JSON-lines file the gateway appends to (`paths.routing_log`), prints the last `lines`
//! decisions rendered by [`super::routing_log::render`], and with `follow` keeps printing new ones,
//! surviving the file being rotated or truncated (it reopens when the file shrinks or is replaced).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use super::routing_log::render;

/// Prints the last `lines` lines of `path` (rendered), then follows it if asked.
pub fn tail(path: &Path, lines: usize, follow: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let mut pos = print_last(path, lines, out)?;
    if !follow {
        return Ok(());
    }
    let mut partial = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let len = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(_) => continue, // rotated away; wait for the new file
        };
        if len < pos {
            pos = 0; // truncated or replaced: start from its beginning
            partial.clear();
        }
        if len == pos {
            continue;
        }
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(pos))?;
        let mut reader = BufReader::new(f);
        let mut buf = String::new();
        loop {
            buf.clear();
            let n = reader.read_line(&mut buf)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            if !buf.ends_with('\n') {
                partial.push_str(&buf); // a line still being written
                continue;
            }
            partial.push_str(buf.trim_end_matches('\n'));
            writeln!(out, "{}", render(&partial))?;
            partial.clear();
        }
        out.flush()?;
    }
}

fn print_last(path: &Path, lines: usize, out: &mut dyn Write) -> std::io::Result<u64> {
    let f = File::open(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot read the routing log {}: {e}", path.display()),
        )
    })?;
    let mut reader = BufReader::new(f);
    let mut last: std::collections::VecDeque<String> =
        std::collections::VecDeque::with_capacity(lines + 1);
    let mut pos = 0u64;
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = reader.read_line(&mut buf)?;
        if n == 0 || !buf.ends_with('\n') {
            break; // keep an unfinished last line for the follow loop
        }
        pos += n as u64;
        if lines > 0 {
            if last.len() == lines {
                last.pop_front();
            }
            last.push_back(buf.trim_end().to_owned());
        }
    }
    for l in last {
        writeln!(out, "{}", render(&l))?;
    }
    out.flush()?;
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_last_lines_rendered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("routing.jsonl");
        let mut text = String::new();
        for i in 0..5 {
            text.push_str(&format!(
                "{{\"ts\":\"t{i}\",\"msg_id\":\"m{i}\",\"type\":\"DIALOG_NOTAT\",\"from_her\":1,\"to_her\":2,\"outcome\":\"delivered\",\"elapsed_ms\":1.0}}\n"
            ));
        }
        std::fs::write(&p, text).unwrap();
        let mut out = Vec::new();
        tail(&p, 2, false, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            out.contains("msg m3") && out.contains("msg m4") && out.contains("DELIVERED"),
            "{out}"
        );
    }

    #[test]
    fn a_missing_log_is_a_clear_error() {
        let err = tail(
            Path::new("/nonexistent/routing.jsonl"),
            10,
            false,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/routing.jsonl"),
            "{err}"
        );
    }
}
