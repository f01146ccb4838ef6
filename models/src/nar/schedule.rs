//! Which path is substituted when: Nix's substitution goals, for a set known up front.
//!
//! Nix keeps its closure invariant (a valid path's references are valid) by substituting a
//! path only after all its references are valid, and runs at most
//! `max-substitution-jobs` substitutions at once. Here `jobs` worker threads take ready
//! paths from a queue; a path becomes ready when every path it references is registered.
//! Nix's references cannot form cycles, and the packer breaks Debian's (libc6 and
//! libgcc-s1, see `pack`); for a narinfo that still has one, a strongly connected group
//! is ready when everything outside it that it references is registered, and is
//! registered in one transaction once all its members are in place.

use anyhow::{anyhow, Result};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// The groups (strongly connected components) of a reference graph, in dependency order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Members of each group, references first.
    pub groups: Vec<Vec<usize>>,
    group_of: Vec<usize>,
    /// For each group: how many other groups it waits for.
    prerequisites: Vec<usize>,
    /// For each group: the groups waiting for it.
    dependents: Vec<Vec<usize>>,
}

impl Plan {
    /// `refs[i]` are the paths path `i` references (indices; self-references allowed).
    pub fn new(refs: &[Vec<usize>]) -> Plan {
        let groups = strongly_connected(refs);
        let mut group_of = vec![0; refs.len()];
        for (g, members) in groups.iter().enumerate() {
            for &m in members {
                group_of[m] = g;
            }
        }
        let mut prerequisites = vec![0; groups.len()];
        let mut dependents = vec![Vec::new(); groups.len()];
        for (g, members) in groups.iter().enumerate() {
            let mut needs: Vec<usize> = members
                .iter()
                .flat_map(|&m| refs[m].iter().map(|&r| group_of[r]))
                .filter(|&h| h != g)
                .collect();
            needs.sort_unstable();
            needs.dedup();
            prerequisites[g] = needs.len();
            for h in needs {
                dependents[h].push(g);
            }
        }
        Plan {
            groups,
            group_of,
            prerequisites,
            dependents,
        }
    }
}

/// Tarjan's algorithm, iterative (a long dependency chain must not exhaust the stack).
/// Components come out after every component they reference.
fn strongly_connected(refs: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = refs.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, position in its reference list)
        let mut calls = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
            if let Some(&w) = refs[v].get(*pos) {
                *pos += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                component.sort_unstable();
                out.push(component);
            }
        }
    }
    out
}

struct State<T> {
    ready: VecDeque<usize>,
    waiting: Vec<usize>,
    unfinished_in_group: Vec<usize>,
    results: Vec<Option<T>>,
    groups_done: usize,
    in_flight: usize,
    failure: Option<anyhow::Error>,
}

/// Runs `substitute(i)` for every path on `jobs` threads in the plan's order, and
/// `register(group)` once all members of a group are substituted. Stops taking new paths
/// at the first error and returns it once running substitutions have ended.
pub fn run<T: Send>(
    plan: &Plan,
    jobs: usize,
    substitute: &(dyn Fn(usize) -> Result<T> + Sync),
    register: &(dyn Fn(&[usize]) -> Result<()> + Sync),
) -> Result<Vec<T>> {
    let paths = plan.group_of.len();
    let mut ready = VecDeque::new();
    for (g, members) in plan.groups.iter().enumerate() {
        if plan.prerequisites[g] == 0 {
            ready.extend(members);
        }
    }
    let state = Mutex::new(State {
        ready,
        waiting: plan.prerequisites.clone(),
        unfinished_in_group: plan.groups.iter().map(Vec::len).collect(),
        results: (0..paths).map(|_| None).collect(),
        groups_done: 0,
        in_flight: 0,
        failure: None,
    });
    let wake = Condvar::new();
    let worker = || {
        let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let path = {
                let mut s = lock();
                loop {
                    if s.failure.is_some() || s.groups_done == plan.groups.len() {
                        return;
                    }
                    if let Some(p) = s.ready.pop_front() {
                        s.in_flight += 1;
                        break p;
                    }
                    if s.in_flight == 0 {
                        s.failure = Some(anyhow!("substitution stalled: no path is ready"));
                        wake.notify_all();
                        return;
                    }
                    s = wake.wait(s).unwrap_or_else(|p| p.into_inner());
                }
            };
            let outcome = substitute(path);
            let mut s = lock();
            s.in_flight -= 1;
            let result = match outcome {
                Ok(r) => r,
                Err(e) => {
                    s.failure.get_or_insert(e);
                    wake.notify_all();
                    return;
                }
            };
            s.results[path] = Some(result);
            let g = plan.group_of[path];
            s.unfinished_in_group[g] -= 1;
            if s.unfinished_in_group[g] > 0 {
                continue;
            }
            // The last member of its group: register the group. Only this thread can get
            // here for `g`, and no path of a dependent group starts before it is done.
            let members = &plan.groups[g];
            s.in_flight += 1;
            drop(s);
            let registered = register(members);
            let mut s = lock();
            s.in_flight -= 1;
            if let Err(e) = registered {
                s.failure.get_or_insert(e);
                wake.notify_all();
                return;
            }
            s.groups_done += 1;
            for &d in &plan.dependents[g] {
                s.waiting[d] -= 1;
                if s.waiting[d] == 0 {
                    let members = &plan.groups[d];
                    s.ready.extend(members);
                }
            }
            wake.notify_all();
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(paths.max(1)) {
            scope.spawn(worker);
        }
    });
    let s = state.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = s.failure {
        return Err(e);
    }
    s.results
        .into_iter()
        .map(|r| r.ok_or_else(|| anyhow!("a path was never substituted")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn cycles_form_one_group_after_their_references() {
        // 0 -> 1 <-> 2 -> 3; 4 alone.
        let refs = vec![vec![1], vec![2], vec![1, 3], vec![], vec![4]];
        let plan = Plan::new(&refs);
        let pos = |p: usize| plan.groups.iter().position(|g| g.contains(&p)).unwrap();
        assert_eq!(plan.groups[pos(1)], vec![1, 2]);
        assert!(pos(3) < pos(1) && pos(1) < pos(0));
    }

    #[test]
    fn a_path_starts_only_after_its_references_are_registered() {
        let refs = vec![vec![1], vec![2], vec![1, 3], vec![], vec![]];
        let plan = Plan::new(&refs);
        let log = Mutex::new(Vec::new());
        let registered = Mutex::new(Vec::<usize>::new());
        let out = run(
            &plan,
            3,
            &|i| {
                let done = registered.lock().unwrap().clone();
                for r in &refs[i] {
                    let same_group = plan.groups.iter().any(|g| g.contains(&i) && g.contains(r));
                    assert!(same_group || done.contains(r), "{i} started before {r}");
                }
                log.lock().unwrap().push(i);
                Ok(i * 10)
            },
            &|members| {
                registered.lock().unwrap().extend(members);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(out, vec![0, 10, 20, 30, 40]);
        assert_eq!(log.lock().unwrap().len(), 5);
    }

    #[test]
    fn the_first_error_stops_the_run() {
        let refs = vec![vec![1], vec![]];
        let plan = Plan::new(&refs);
        let started = Mutex::new(Vec::new());
        let err = run(
            &plan,
            2,
            &|i| {
                started.lock().unwrap().push(i);
                if i == 1 {
                    anyhow::bail!("path 1 is broken")
                }
                Ok(())
            },
            &|_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "path 1 is broken");
        assert_eq!(*started.lock().unwrap(), vec![1]);
    }
}
