//! Commands that change a lake, on a lake `flowscope serve` has: their work goes to the server
//! (see `flowscope_server::handoff`), which is the lake's only writer while it runs.

use std::path::Path;
use std::time::Duration;

use flowscope_lake::Lake;
use flowscope_server::handoff::{self, Reply, Request};

/// Where a command's changes go.
pub(super) enum Writer {
    /// This process holds the lake.
    Local(Lake),
    /// A server has the lake: send the work with [`send`].
    Served,
}

/// The lake at `root` for a command that changes it; waits (saying so once) while another
/// command that is not a server holds it.
pub(super) fn open(root: &Path) -> anyhow::Result<Writer> {
    let mut warned = false;
    loop {
        if handoff::served(root) {
            return Ok(Writer::Served);
        }
        match Lake::try_open(root)? {
            Ok(lake) => return Ok(Writer::Local(lake)),
            Err(holder) => {
                if !warned {
                    tracing::warn!(lake = %root.display(), "{holder} is changing this lake; waiting for it");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// Sends `request` to the server of the lake at `root`; its answer, or why it failed.
pub(super) fn send(root: &Path, request: &Request) -> anyhow::Result<Reply> {
    match handoff::send(root, request)? {
        Some(Reply::Failed(why)) => anyhow::bail!("{why} (the server of {})", root.display()),
        Some(reply) => Ok(reply),
        None => anyhow::bail!(
            "the server of {} stopped before it took the work; run the command again",
            root.display()
        ),
    }
}
