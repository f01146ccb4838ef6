//! The tree the daemon serves: the union of all package images, and each package alone,
//! as distri's `/ro` shows the union (its "exchange directories") beside `/ro/PKG`.
//!
//! Layout of the mount (inode 1):
//! - `union/` (inode 2): every image's root, merged;
//! - `NAME_VERSION/`: one image's root (the image file's name without `.sqfs`; the `_`
//!   keeps these names apart from `union`).
//!
//! # Two images providing the same path
//! Images are ordered by install order (the order `add_image` was called). Directories
//! merge: a directory lists the names of every image's directory at that path, and shows
//! the mode, owner and times of the first image that has it. For anything else the first
//! image that has the name wins: its file or symlink is shown, and later images' entries
//! of that name are hidden, whatever their kind (a later directory under a name that is
//! a file in an earlier image is hidden too). This is OverlayFS's rule with the first
//! lower layer on top, which is how the `overlay` model orders its layers, so both show
//! the same tree.
//!
//! # Laziness and caches
//! Node numbers are stable for the life of the mount: a node is created the first time
//! its name is listed and never freed, so any inode number the kernel holds stays valid.
//! A directory's listing (its children and their inodes) is read from the images the
//! first time it is looked up or listed, through each image's metadata block cache.
//! `forget_listings` (the daemon's `reset_caches`) marks every listing unloaded and
//! empties the metadata caches, so after dropping the page cache the next lookup reads
//! the inode and directory tables from the disk again, as the kernel's squashfs would.
//! A reload matches names to the existing nodes, so numbers do not change.
//! A miss is a binary search in a loaded listing: the listing is the daemon's negative
//! cache; the kernel's negative dentries (see `fs`) spare even that.

use super::image::{Body, DirLoc, Image, Inode, Kind};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub const ROOT: u64 = 1;
pub const UNION: u64 = 2;
pub const UNION_NAME: &[u8] = b"union";

/// Attributes of a node, as `stat` shows them.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub kind: Kind,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub nlink: u32,
    pub size: u64,
}

impl Attr {
    fn of(inode: &Inode) -> Attr {
        Attr {
            kind: inode.kind,
            mode: inode.mode,
            uid: inode.uid,
            gid: inode.gid,
            mtime: inode.mtime,
            nlink: inode.nlink,
            size: inode.size(),
        }
    }

    fn synthetic_dir() -> Attr {
        Attr {
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            nlink: 2,
            size: 0,
        }
    }
}

/// A regular file: which image and where its data is.
#[derive(Debug, Clone)]
pub struct FileData {
    pub image: Arc<Image>,
    pub loc: Arc<super::image::FileLoc>,
}

#[derive(Debug)]
enum Content {
    Dir(Dir),
    File(FileData),
    Symlink(Arc<[u8]>),
}

#[derive(Debug, Default)]
struct Dir {
    /// The directories this one merges, in image order: (image index, listing).
    sources: Vec<(usize, DirLoc)>,
    /// Children sorted by name bytes. Kept while unloaded, so a reload reuses numbers.
    children: Vec<(Box<[u8]>, u64)>,
    loaded: bool,
    /// Synthetic directories (the mount root) are never read from an image.
    synthetic: bool,
}

#[derive(Debug)]
struct Node {
    parent: u64,
    attr: Attr,
    content: Content,
}

#[derive(Debug, Default)]
struct Tree {
    images: Vec<Arc<Image>>,
    /// Node `ino` is at index `ino - 1`.
    nodes: Vec<Node>,
    /// Bumped whenever sources change or listings are forgotten; a listing read under an
    /// older generation is discarded and read again.
    generation: u64,
}

/// What the kernel must forget after an image was added: directory listings and the
/// (possibly negative) entries of the names the image brings.
#[derive(Debug, Default)]
pub struct Invalidations {
    pub inodes: Vec<u64>,
    pub entries: Vec<(u64, Box<[u8]>)>,
}

/// The union. Shared by the FUSE worker threads and the installer.
#[derive(Debug)]
pub struct Union {
    tree: RwLock<Tree>,
}

/// One entry of [`Union::list`]: its index in the listing, name, node and attributes.
pub type Listed = (usize, Box<[u8]>, u64, Attr);

/// One child of a listing being read: its first inode and, for a directory, every
/// image's directory of that name.
struct Pending {
    attr: Attr,
    content: Content,
}

impl Default for Union {
    fn default() -> Self {
        Self::new()
    }
}

impl Union {
    /// An empty union: the mount root with an empty `union/`.
    pub fn new() -> Self {
        let dir = |children| Dir {
            sources: Vec::new(),
            children,
            loaded: true,
            synthetic: true,
        };
        let root = Node {
            parent: ROOT,
            attr: Attr::synthetic_dir(),
            content: Content::Dir(dir(vec![(UNION_NAME.into(), UNION)])),
        };
        let mut union_dir = dir(Vec::new());
        union_dir.synthetic = false;
        let union = Node {
            parent: ROOT,
            attr: Attr::synthetic_dir(),
            content: Content::Dir(union_dir),
        };
        Union {
            tree: RwLock::new(Tree {
                images: Vec::new(),
                nodes: vec![root, union],
                generation: 0,
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Tree> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tree> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn image_count(&self) -> usize {
        self.read().images.len()
    }

    /// Opens the image at `path` and adds it: its root merges into `union/`, and it
    /// appears alone under `name/`. Returns what the kernel must forget.
    pub fn add_image(&self, path: &Path, name: &str) -> Result<Invalidations> {
        if name.as_bytes() == UNION_NAME || name.is_empty() || name.contains('/') {
            bail!("image name {name:?} cannot be a directory of the mount");
        }
        let image = Arc::new(Image::open(path)?);
        let root = image.inode(image.root)?;
        let Body::Dir(root_dir) = root.body else {
            bail!("{}: the root inode is not a directory", path.display());
        };
        let mut tree = self.write();
        let index = tree.images.len();
        let key: Box<[u8]> = name.as_bytes().into();
        let Content::Dir(top) = &tree.nodes[0].content else {
            unreachable!("node 1 is the mount root");
        };
        let at = match top.children.binary_search_by(|(n, _)| n[..].cmp(&key[..])) {
            Ok(_) => bail!("image {name} is installed already"),
            Err(at) => at,
        };
        tree.images.push(image.clone());
        let package = tree.push(Node {
            parent: ROOT,
            attr: Attr::of(&root),
            content: Content::Dir(Dir {
                sources: vec![(index, root_dir)],
                ..Dir::default()
            }),
        });
        if let Content::Dir(top) = &mut tree.nodes[0].content {
            top.children.insert(at, (key, package));
        }
        if index == 0 {
            tree.nodes[(UNION - 1) as usize].attr = Attr::of(&root);
        }
        if let Content::Dir(d) = &mut tree.nodes[(UNION - 1) as usize].content {
            d.sources.push((index, root_dir));
        }
        tree.generation += 1;
        // Every union directory the new image shares with nodes that exist (the kernel
        // may know them) must be listed again and its names forgotten by the kernel.
        let mut inval = Invalidations {
            inodes: vec![ROOT],
            entries: vec![(ROOT, name.as_bytes().into())],
        };
        tree.mark_shared(&image, UNION, &root_dir, &mut inval)?;
        Ok(inval)
    }

    /// Forgets every directory listing and the images' metadata caches.
    pub fn forget_listings(&self) {
        let mut tree = self.write();
        for node in &mut tree.nodes {
            if let Content::Dir(d) = &mut node.content {
                d.loaded = d.synthetic;
            }
        }
        tree.generation += 1;
        for image in &tree.images {
            image.forget_metadata();
        }
    }

    /// Bytes in the images' metadata caches.
    pub fn cached_metadata_bytes(&self) -> usize {
        self.read()
            .images
            .iter()
            .map(|i| i.cached_metadata_bytes())
            .sum()
    }

    pub fn node_count(&self) -> usize {
        self.read().nodes.len()
    }

    pub fn attr(&self, ino: u64) -> Option<Attr> {
        self.read().node(ino).map(|n| n.attr)
    }

    pub fn parent(&self, ino: u64) -> Option<u64> {
        self.read().node(ino).map(|n| n.parent)
    }

    pub fn symlink(&self, ino: u64) -> Option<Arc<[u8]>> {
        match &self.read().node(ino)?.content {
            Content::Symlink(t) => Some(t.clone()),
            _ => None,
        }
    }

    pub fn file(&self, ino: u64) -> Option<FileData> {
        match &self.read().node(ino)?.content {
            Content::File(f) => Some(f.clone()),
            _ => None,
        }
    }

    /// The child `name` of directory `parent`: `Ok(None)` when there is none.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<(u64, Attr)>> {
        self.ensure_loaded(parent)?;
        let tree = self.read();
        let Some(Content::Dir(d)) = tree.node(parent).map(|n| &n.content) else {
            bail!("lookup in {parent}: not a directory");
        };
        Ok(d.children
            .binary_search_by(|(n, _)| n[..].cmp(name))
            .ok()
            .map(|i| d.children[i].1)
            .and_then(|ino| tree.node(ino).map(|n| (ino, n.attr))))
    }

    /// Up to `limit` children of `dir` from index `from`: (index, name, ino, attr).
    pub fn list(&self, dir: u64, from: usize, limit: usize) -> Result<Vec<Listed>> {
        self.ensure_loaded(dir)?;
        let tree = self.read();
        let Some(Content::Dir(d)) = tree.node(dir).map(|n| &n.content) else {
            bail!("listing {dir}: not a directory");
        };
        Ok(d.children
            .iter()
            .enumerate()
            .skip(from)
            .take(limit)
            .filter_map(|(i, (name, ino))| tree.node(*ino).map(|n| (i, name.clone(), *ino, n.attr)))
            .collect())
    }

    /// Loads `ino`'s listing, and first those of its unloaded ancestors, whose loads set
    /// the sources of the directories below them.
    fn ensure_loaded(&self, ino: u64) -> Result<()> {
        loop {
            // The topmost unloaded directory on the way up from `ino`.
            let (target, generation, sources, images) = {
                let tree = self.read();
                let mut target = None;
                let mut at = ino;
                loop {
                    match tree.node(at).map(|n| &n.content) {
                        Some(Content::Dir(d)) if !d.loaded => target = Some(at),
                        Some(Content::Dir(_)) => {}
                        _ if at == ino => bail!("{ino}: not a directory"),
                        _ => {}
                    }
                    let parent = tree.node(at).map(|n| n.parent).unwrap_or(ROOT);
                    if at == ROOT || parent == at {
                        break;
                    }
                    at = parent;
                }
                let Some(target) = target else {
                    return Ok(());
                };
                let Some(Content::Dir(d)) = tree.node(target).map(|n| &n.content) else {
                    unreachable!("target is a directory");
                };
                (
                    target,
                    tree.generation,
                    d.sources.clone(),
                    tree.images.clone(),
                )
            };
            // Read without the lock: other lookups go on meanwhile.
            let listing = read_listing(&images, &sources)?;
            let mut tree = self.write();
            if tree.generation == generation {
                tree.install_listing(target, listing);
            }
        }
    }
}

/// Reads and merges the listings of `sources` (see the module doc for the rule).
fn read_listing(
    images: &[Arc<Image>],
    sources: &[(usize, DirLoc)],
) -> Result<BTreeMap<Box<[u8]>, Pending>> {
    let mut merged: BTreeMap<Box<[u8]>, Pending> = BTreeMap::new();
    for &(index, loc) in sources {
        let image = images
            .get(index)
            .with_context(|| format!("image {index} of a listing is not open"))?;
        for entry in image.read_dir(&loc)? {
            if let Some(first) = merged.get_mut(&entry.name[..]) {
                // Directories merge; anything else: the first image wins.
                if let (Content::Dir(d), Kind::Dir) = (&mut first.content, entry.kind) {
                    if let Body::Dir(loc) = image.inode(entry.inode)?.body {
                        d.sources.push((index, loc));
                    }
                }
                continue;
            }
            let inode = image.inode(entry.inode)?;
            let attr = Attr::of(&inode);
            let content = match inode.body {
                Body::Dir(loc) => Content::Dir(Dir {
                    sources: vec![(index, loc)],
                    ..Dir::default()
                }),
                Body::File(loc) => Content::File(FileData {
                    image: image.clone(),
                    loc: Arc::new(loc),
                }),
                Body::Symlink(target) => Content::Symlink(target.into()),
            };
            merged.insert(entry.name.into_boxed_slice(), Pending { attr, content });
        }
    }
    Ok(merged)
}

impl Tree {
    fn node(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(usize::try_from(ino.checked_sub(1)?).ok()?)
    }

    fn push(&mut self, node: Node) -> u64 {
        self.nodes.push(node);
        self.nodes.len() as u64
    }

    fn dir_mut(&mut self, ino: u64) -> &mut Dir {
        match &mut self.nodes[(ino - 1) as usize].content {
            Content::Dir(d) => d,
            _ => unreachable!("{ino} is a directory"),
        }
    }

    /// Installs a freshly read listing of `dir`, keeping the numbers of known names.
    fn install_listing(&mut self, dir: u64, listing: BTreeMap<Box<[u8]>, Pending>) {
        let old = std::mem::take(&mut self.dir_mut(dir).children);
        let mut children = Vec::with_capacity(listing.len());
        for (name, pending) in listing {
            let known = old
                .binary_search_by(|(n, _)| n[..].cmp(&name[..]))
                .ok()
                .map(|i| old[i].1);
            let ino = match known {
                Some(ino) => {
                    let node = &mut self.nodes[(ino - 1) as usize];
                    // Images only ever come after: a known name keeps its first
                    // image's kind, so only a directory's sources can grow.
                    if let (Content::Dir(now), Content::Dir(new)) =
                        (&mut node.content, pending.content)
                    {
                        if now.sources != new.sources {
                            now.sources = new.sources;
                            now.loaded = false;
                        }
                    }
                    ino
                }
                None => self.push(Node {
                    parent: dir,
                    attr: pending.attr,
                    content: pending.content,
                }),
            };
            children.push((name, ino));
        }
        let d = self.dir_mut(dir);
        d.children = children;
        d.loaded = true;
    }

    /// After `image` was added: every existing union directory at a path the image also
    /// has as a directory is marked unloaded, and its names in the image are to be
    /// forgotten by the kernel (it may hold negative entries for them).
    fn mark_shared(
        &mut self,
        image: &Image,
        dir: u64,
        loc: &DirLoc,
        inval: &mut Invalidations,
    ) -> Result<()> {
        let d = self.dir_mut(dir);
        d.loaded = false;
        let children = d.children.clone();
        inval.inodes.push(dir);
        for entry in image.read_dir(loc)? {
            inval
                .entries
                .push((dir, entry.name.clone().into_boxed_slice()));
            if entry.kind != Kind::Dir {
                continue;
            }
            let Ok(i) = children.binary_search_by(|(n, _)| n[..].cmp(&entry.name[..])) else {
                continue;
            };
            let child = children[i].1;
            if !matches!(self.nodes[(child - 1) as usize].content, Content::Dir(_)) {
                continue;
            }
            if let Body::Dir(sub) = image.inode(entry.inode)?.body {
                self.mark_shared(image, child, &sub, inval)?;
            }
        }
        Ok(())
    }
}
