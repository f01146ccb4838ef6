//! A real link for the fetch phases (`harness run --link RATE[:DELAY]`): the mirror
//! served over HTTP from a network namespace of its own, joined to the harness's by a
//! veth pair the kernel shapes (`link`), and the server that runs there (`server`).
//!
//! Both namespaces are unnamed and the harness makes them: its own with `unshare`, the
//! server's as the server process's, so they, the veth pair in them and its qdiscs end
//! with the processes (the server dies with the harness: `PR_SET_PDEATHSIG`). Nothing
//! is added to the host's namespace, and no traffic leaves the pair.

pub mod link;
pub mod rates;
pub mod server;
