//! What a push tells the user about the local tree: the entries it cannot
//! reproduce remotely (with Debian's linked GOROOT spelled out).

use crate::localtree::{Kind, LocalTree};
use crate::out::Out;

/// Says, once per push, what cannot be pushed (symlinks leaving GOROOT,
/// sockets...), with the Debian GOROOT case spelled out.
pub(super) async fn warn_unpushable(out: &Out, tree: &LocalTree, verbose: bool) {
    let bad: Vec<(&String, &String)> = tree
        .entries
        .iter()
        .filter_map(|(k, e)| match &e.kind {
            Kind::Unpushable(why) => Some((k, why)),
            _ => None,
        })
        .collect();
    let Some((first, why)) = bad.first() else {
        return;
    };
    if verbose {
        return; // plan() lists each one.
    }
    let top_links = bad.iter().filter(|(k, _)| !k.contains('/')).count();
    let mut line = format!(
        "Not pushing {} local entr{} that cannot be reproduced remotely; first: {first} ({why})",
        bad.len(),
        if bad.len() == 1 { "y" } else { "ies" }
    );
    if top_links > 0 && !tree.entries.contains_key("src") {
        line.push_str(". GOROOT's top level links outside it (as Debian's /usr/lib/go does): push a copy made with `cp -rL`");
    }
    out.log(line).await;
}
