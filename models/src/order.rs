//! Dependency order: which package is installed first.
//!
//! apt hands dpkg packages so that a package's dependencies are configured before it.
//! Debian has dependency cycles (libc6 and libgcc-s1 depend on each other), which apt
//! breaks; here a cycle (a strongly connected component) is installed as a group, its
//! members ordered by name, and the groups in dependency order. The result is
//! deterministic: the same set gives the same order on every machine.

use std::collections::BTreeMap;

/// A package as ordering sees it: its name and the names it needs first.
pub trait Dependent {
    fn name(&self) -> &str;
    fn needs(&self) -> Vec<&str>;
}

impl Dependent for crate::Artifact {
    fn name(&self) -> &str {
        &self.package
    }
    fn needs(&self) -> Vec<&str> {
        self.pre_depends
            .iter()
            .chain(&self.depends)
            .map(String::as_str)
            .collect()
    }
}

/// Indices of `items` in install order: dependencies before dependents. Dependencies on
/// names outside `items` are ignored.
pub fn install_order<T: Dependent>(items: &[T]) -> Vec<usize> {
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        by_name.insert(item.name(), i);
    }
    let edges: Vec<Vec<usize>> = items
        .iter()
        .map(|item| {
            let mut deps: Vec<usize> = item
                .needs()
                .into_iter()
                .filter_map(|n| by_name.get(n).copied())
                .collect();
            deps.sort_by(|a, b| items[*a].name().cmp(items[*b].name()));
            deps.dedup();
            deps
        })
        .collect();
    let mut tarjan = Tarjan::new(&edges);
    for &i in by_name.values() {
        if tarjan.index[i].is_none() {
            tarjan.visit(i);
        }
    }
    // Tarjan emits each component after every component it depends on.
    tarjan
        .components
        .into_iter()
        .flat_map(|mut scc| {
            scc.sort_by(|a, b| items[*a].name().cmp(items[*b].name()));
            scc
        })
        .collect()
}

struct Tarjan<'a> {
    edges: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    components: Vec<Vec<usize>>,
}

impl<'a> Tarjan<'a> {
    fn new(edges: &'a [Vec<usize>]) -> Self {
        let n = edges.len();
        Tarjan {
            edges,
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            components: Vec::new(),
        }
    }

    // Recursive: dependency chains in a distribution are tens of packages deep, far from
    // any stack limit.
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.edges[v] {
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(wi) if self.on_stack[w] => self.low[v] = self.low[v].min(wi),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                scc.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(scc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct P(&'static str, Vec<&'static str>);
    impl Dependent for P {
        fn name(&self) -> &str {
            self.0
        }
        fn needs(&self) -> Vec<&str> {
            self.1.clone()
        }
    }

    fn names(items: &[P]) -> Vec<&'static str> {
        install_order(items)
            .into_iter()
            .map(|i| items[i].0)
            .collect()
    }

    #[test]
    fn dependencies_come_first() {
        let items = [
            P("qemu", vec!["libc6", "glib"]),
            P("glib", vec!["libc6"]),
            P("libc6", vec![]),
        ];
        assert_eq!(names(&items), ["libc6", "glib", "qemu"]);
    }

    #[test]
    fn cycles_are_grouped_and_ordered_by_name() {
        let items = [
            P("app", vec!["libgcc-s1"]),
            P("libgcc-s1", vec!["libc6"]),
            P("libc6", vec!["libgcc-s1", "base"]),
            P("base", vec!["missing-virtual"]),
        ];
        assert_eq!(names(&items), ["base", "libc6", "libgcc-s1", "app"]);
    }
}
