//! A real link for the fetch phases (`harness run --link RATE[:DELAY]`): the mirror
//! served over HTTP from a network namespace of its own, joined to the harness's through
//! a router namespace whose two egresses the kernel shapes (`link`), and the server that
//! runs there (`server`).
//!
//! The three namespaces are unnamed and the harness makes them: its own with `unshare`,
//! the server's and the router's as those processes', so they, the veth pairs in them
//! and their qdiscs end with the processes (the server and the router die with the
//! harness: `PR_SET_PDEATHSIG`). Nothing is added to the host's namespace, and no
//! traffic leaves the pairs.

pub mod link;
pub mod rates;
pub mod server;
