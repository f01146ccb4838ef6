//! The tree the daemon serves: the union of all package images, and each package alone,
//! as distri's `/ro` shows the union (its "exchange directories") beside `/ro/PKG`.
//!
//! Layout of the mount (inode 1):
//! - `union/` (inode 2): every image's root, merged;
//! - `NAME_VERSION/`: one image's root (the image file's name without `.sqfs`; the `_`
//!   keeps these names apart from `union`).
//!
//! # Two images providing the same path
//! Images are ordered by install order (the order `add_image` was called; a replaced
//! image's successor takes its place, see below). Directories
//! merge: a directory lists the names of every image's directory at that path, and shows
//! the mode, owner and times of the first image that has it. For anything else the first
//! image that has the name wins: its file or symlink is shown, and later images' entries
//! of that name are hidden, whatever their kind (a later directory under a name that is
//! a file in an earlier image is hidden too). This is OverlayFS's rule with the first
//! lower layer on top, which is how the `overlay` model orders its layers, so both show
//! the same tree.
//!
//! # Upgrades: replacing an image
//! `replace_image` is distri's exchange directories moving to a package's newest
//! version: the new image takes the old one's place in the image order (so the rule
//! above gives the answer the `overlay` model gives by replacing its layer in place),
//! the old image leaves the union, and `NAME_VERSION/` of the old version leaves the
//! mount root (distri keeps old versions under `/ro` until its `gc`; here the installer
//! deletes the old image at once, so nothing serves it any more). Every union directory
//! that held the old or holds the new image, and that the kernel may know (its listing
//! was read once), is read again at once, top down, and compared with what it was:
//! - a name that appeared, vanished, or now has another kind is a changed entry
//!   (`FUSE_NOTIFY_INVAL_ENTRY`: a cached positive or negative dentry goes); a name of
//!   another kind gets a new node;
//! - a node of a name that persists with its kind keeps its number; if its content or
//!   attributes changed (another image's file now, or the new version's), the node is
//!   updated and invalidated (`FUSE_NOTIFY_INVAL_INODE`, which also drops its page
//!   cache: entries and attributes are cached "forever", so the kernel would otherwise
//!   go on serving the old bytes);
//! - the directory itself is invalidated (its listing may be in the page cache).
//!
//! A node that leaves the tree is not freed (the kernel may still hold its number): a
//! directory's sources are cleared, so it lists as empty; a file keeps its content, so a
//! reader that held it open reads the old bytes, as after an unlink. The old image stays
//! open only as long as such a file node refers to it.
//!
//! # Laziness and caches
//! Node numbers are stable for the life of the mount: a node is created the first time
//! its name is listed and never freed, so any inode number the kernel holds stays valid
//! (an upgrade gives a new number only to a name whose kind changed).
//! A directory's listing (its children and their inodes) is read from the images the
//! first time it is looked up or listed, through each image's metadata block cache.
//! `forget_listings` (the daemon's `reset_caches`) marks every listing unloaded and
//! empties the metadata caches, so after dropping the page cache the next lookup reads
//! the inode and directory tables from the disk again, as the kernel's squashfs would.
//! A reload matches names to the existing nodes, so numbers do not change.
//! A miss is a binary search in a loaded listing: the listing is the daemon's negative
//! cache; the kernel's negative dentries (see `fs`) spare even that.

use super::image::{Body, DirLoc, Image, Inode, Kind};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub const ROOT: u64 = 1;
pub const UNION: u64 = 2;
pub const UNION_NAME: &[u8] = b"union";

/// Attributes of a node, as `stat` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl FileData {
    /// The same bytes: the same open image and the same place in it.
    fn same(&self, other: &FileData) -> bool {
        Arc::ptr_eq(&self.image, &other.image) && self.loc == other.loc
    }
}

#[derive(Debug)]
enum Content {
    Dir(Dir),
    File(FileData),
    Symlink(Arc<[u8]>),
}

impl Content {
    fn kind(&self) -> Kind {
        match self {
            Content::Dir(_) => Kind::Dir,
            Content::File(_) => Kind::File,
            Content::Symlink(_) => Kind::Symlink,
        }
    }
}

#[derive(Debug, Default)]
struct Dir {
    /// The directories this one merges, in image order: (image slot, listing).
    sources: Vec<(usize, DirLoc)>,
    /// Children sorted by name bytes. Kept while unloaded, so a reload reuses numbers.
    children: Vec<(Box<[u8]>, u64)>,
    loaded: bool,
    /// Its listing was read at least once, so the kernel may know names in it (or their
    /// absence): an upgrade that changes its sources reads it again at once.
    listed: bool,
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
    /// Every image opened, by slot: a source names its image by slot. A replaced
    /// image's slot is closed (`None`) and never reused, so a source left on it in a
    /// node that left the tree reads as nothing rather than as another image's bytes.
    images: Vec<Option<Arc<Image>>>,
    /// Node `ino` is at index `ino - 1`.
    nodes: Vec<Node>,
    /// Bumped whenever sources change or listings are forgotten; a listing read under an
    /// older generation is discarded and read again.
    generation: u64,
}

/// What the kernel must forget after an image was added or replaced: nodes (directory
/// listings, file contents and attributes) and the (possibly negative) entries of names.
#[derive(Debug, Default)]
pub struct Invalidations {
    pub inodes: Vec<u64>,
    pub entries: Vec<(u64, Box<[u8]>)>,
}

/// The union. Shared by the FUSE worker threads and the installer.
#[derive(Debug)]
pub struct Union {
    tree: RwLock<Tree>,
    /// Open images with readahead off (`POSIX_FADV_RANDOM`): see
    /// [`Union::with_image_readahead`].
    image_readahead: bool,
}

/// One entry of [`Union::list`]: its index in the listing, name, node and attributes.
pub type Listed = (usize, Box<[u8]>, u64, Attr);

/// One child of a listing being read: its first inode and, for a directory, every
/// image's directory of that name.
struct Pending {
    attr: Attr,
    content: Content,
}

/// What installing a listing over a known one changed (see `Tree::install_listing`).
#[derive(Default)]
struct ListingChanges {
    /// Names that appeared, vanished, or now name a node of another kind.
    names: Vec<Box<[u8]>>,
    /// Known nodes whose content or attributes changed in place.
    nodes: Vec<u64>,
    /// Known directories whose sources changed, and whether their listing was read.
    dirs: Vec<(u64, bool)>,
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
            listed: true,
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
            image_readahead: true,
        }
    }

    /// Whether the kernel reads ahead in the image files the daemon preads (its
    /// default). Off, every image is opened with `POSIX_FADV_RANDOM`: a metadata read
    /// of a few hundred bytes then brings in its pages, not a readahead window of the
    /// image beside them (with thousands of images, the difference between reading the
    /// file data and reading twice as much), and a file's data read brings in what the
    /// kernel's FUSE readahead asked for.
    pub fn with_image_readahead(mut self, on: bool) -> Self {
        self.image_readahead = on;
        self
    }

    fn read(&self) -> RwLockReadGuard<'_, Tree> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tree> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn image_count(&self) -> usize {
        self.read().images.iter().flatten().count()
    }

    /// Opens the image at `path` and adds it: its root merges into `union/`, and it
    /// appears alone under `name/`. Returns what the kernel must forget.
    /// `backing` is where the kernel has the image mounted, for passthrough opens.
    pub fn add_image(
        &self,
        path: &Path,
        name: &str,
        backing: Option<&Path>,
    ) -> Result<Invalidations> {
        if name.as_bytes() == UNION_NAME || name.is_empty() || name.contains('/') {
            bail!("image name {name:?} cannot be a directory of the mount");
        }
        let image = Arc::new(open_image(path, backing, self.image_readahead)?);
        let root = image.inode(image.root)?;
        let Body::Dir(root_dir) = root.body else {
            bail!("{}: the root inode is not a directory", path.display());
        };
        let mut tree = self.write();
        if tree.package(name).is_some() {
            bail!("image {name} is installed already");
        }
        let index = tree.images.len();
        tree.images.push(Some(image.clone()));
        tree.add_package(name, index, &root, root_dir);
        let union = tree.dir_mut(UNION);
        union.sources.push((index, root_dir));
        if union.sources.len() == 1 {
            tree.nodes[(UNION - 1) as usize].attr = Attr::of(&root);
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

    /// Replaces the image of package directory `old_name` with the image at `path`,
    /// shown as `new_name/`: the new image takes the old one's place in the image order
    /// and the old one leaves the union and the mount root (see the module doc). Returns
    /// what the kernel must forget. An error reading an image midway leaves the union
    /// partly updated; the installer's error ends the run (teardown unmounts).
    pub fn replace_image(
        &self,
        old_name: &str,
        path: &Path,
        new_name: &str,
        backing: Option<&Path>,
    ) -> Result<Invalidations> {
        if new_name.as_bytes() == UNION_NAME || new_name.is_empty() || new_name.contains('/') {
            bail!("image name {new_name:?} cannot be a directory of the mount");
        }
        let image = Arc::new(open_image(path, backing, self.image_readahead)?);
        let root = image.inode(image.root)?;
        let Body::Dir(root_dir) = root.body else {
            bail!("{}: the root inode is not a directory", path.display());
        };
        let mut tree = self.write();
        let Some(old_package) = tree.package(old_name) else {
            bail!("image {old_name} is not installed");
        };
        if new_name != old_name && tree.package(new_name).is_some() {
            bail!("image {new_name} is installed already");
        }
        let Some(&(slot, _)) = tree.dir_mut(old_package).sources.first() else {
            bail!("package directory {old_name} has no image");
        };
        let union = tree.dir_mut(UNION);
        let Some(place) = union.sources.iter().position(|&(s, _)| s == slot) else {
            bail!("image {old_name} is not in the union");
        };
        let index = tree.images.len();
        tree.images.push(Some(image));
        tree.dir_mut(UNION).sources[place] = (index, root_dir);
        let mut inval = Invalidations::default();
        if place == 0 {
            let union = &mut tree.nodes[(UNION - 1) as usize];
            if union.attr != Attr::of(&root) {
                union.attr = Attr::of(&root);
                inval.inodes.push(UNION);
            }
        }
        // The mount root: the old version's directory goes, the new one's comes.
        if let Content::Dir(top) = &mut tree.nodes[0].content {
            top.children.retain(|&(_, ino)| ino != old_package);
        }
        tree.orphan(old_package);
        tree.add_package(new_name, index, &root, root_dir);
        inval.inodes.push(ROOT);
        inval.entries.push((ROOT, old_name.as_bytes().into()));
        inval.entries.push((ROOT, new_name.as_bytes().into()));
        let old_image = tree.images[slot].take();
        tree.generation += 1;
        tree.refresh(UNION, &mut inval)?;
        if let Some(old_image) = old_image {
            // Nothing lists from it any more; files the kernel knew may still read it.
            old_image.forget_metadata();
        }
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
        for image in tree.images.iter().flatten() {
            image.forget_metadata();
        }
    }

    /// Bytes in the images' metadata caches.
    pub fn cached_metadata_bytes(&self) -> usize {
        self.read()
            .images
            .iter()
            .flatten()
            .map(|i| i.cached_metadata_bytes())
            .sum()
    }

    /// Whether the union still reads from `image` (an upgrade has not replaced it).
    pub fn serves(&self, image: &Arc<Image>) -> bool {
        self.read()
            .images
            .iter()
            .flatten()
            .any(|i| Arc::ptr_eq(i, image))
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

    /// The file `ino` and its path inside its image (no leading `/`): the names from the
    /// top directory (`union/` or a package's) down. A file the upgrade took out of the
    /// tree has no path (`None`), like any node that is not a file.
    pub fn file_path(&self, ino: u64) -> Option<(FileData, PathBuf)> {
        let tree = self.read();
        let Content::File(file) = &tree.node(ino)?.content else {
            return None;
        };
        let mut names: Vec<&[u8]> = Vec::new();
        let mut at = ino;
        loop {
            let parent = tree.node(at)?.parent;
            let Content::Dir(dir) = &tree.node(parent)?.content else {
                return None;
            };
            let (name, _) = dir.children.iter().find(|&&(_, child)| child == at)?;
            names.push(name);
            // The top directories are `union/` and the packages' at the mount root.
            if parent == UNION || (parent != ROOT && tree.node(parent)?.parent == ROOT) {
                break;
            }
            if parent == ROOT {
                return None;
            }
            at = parent;
        }
        let path: PathBuf = names
            .iter()
            .rev()
            .map(|n| std::ffi::OsStr::from_bytes(n))
            .collect();
        Some((file.clone(), path))
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
                tree.install_listing(target, listing, None);
            }
        }
    }
}

/// Reads and merges the listings of `sources` (see the module doc for the rule). A
/// source on a closed slot (a replaced image, named only by nodes that left the tree)
/// contributes nothing.
fn read_listing(
    images: &[Option<Arc<Image>>],
    sources: &[(usize, DirLoc)],
) -> Result<BTreeMap<Box<[u8]>, Pending>> {
    let mut merged: BTreeMap<Box<[u8]>, Pending> = BTreeMap::new();
    for &(index, loc) in sources {
        let image = match images.get(index) {
            Some(Some(image)) => image,
            Some(None) => continue,
            None => bail!("image {index} of a listing was never opened"),
        };
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

/// Opens an image, with where the kernel has it mounted (see [`Image::backing`]).
fn open_image(path: &Path, backing: Option<&Path>, readahead: bool) -> Result<Image> {
    let mut image = Image::open(path)?;
    if !readahead {
        image.advise_random()?;
    }
    image.backing = backing.map(Path::to_path_buf);
    Ok(image)
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

    /// The package directory `name` of the mount root.
    fn package(&self, name: &str) -> Option<u64> {
        let Content::Dir(top) = &self.nodes[0].content else {
            unreachable!("node 1 is the mount root");
        };
        top.children
            .binary_search_by(|(n, _)| n[..].cmp(name.as_bytes()))
            .ok()
            .map(|i| top.children[i].1)
    }

    /// Adds package directory `name` (not there yet) to the mount root: image `slot`
    /// alone.
    fn add_package(&mut self, name: &str, slot: usize, root: &Inode, root_dir: DirLoc) {
        let package = self.push(Node {
            parent: ROOT,
            attr: Attr::of(root),
            content: Content::Dir(Dir {
                sources: vec![(slot, root_dir)],
                ..Dir::default()
            }),
        });
        let top = self.dir_mut(ROOT);
        let key: Box<[u8]> = name.as_bytes().into();
        let at = top
            .children
            .binary_search_by(|(n, _)| n[..].cmp(&key[..]))
            .unwrap_or_else(|at| at);
        top.children.insert(at, (key, package));
    }

    /// Node `ino` left the tree: a directory forgets its sources and children (it lists
    /// as empty from now on), recursively; a file keeps its content (see the module doc).
    fn orphan(&mut self, ino: u64) {
        let Content::Dir(d) = &mut self.nodes[(ino - 1) as usize].content else {
            return;
        };
        d.sources.clear();
        d.loaded = false;
        for (_, child) in std::mem::take(&mut d.children) {
            self.orphan(child);
        }
    }

    /// After an image was replaced: reads `dir`'s listing again at once, updates its
    /// nodes, and goes down into every directory whose sources changed and whose
    /// listing the kernel may know, collecting what the kernel must forget.
    fn refresh(&mut self, dir: u64, inval: &mut Invalidations) -> Result<()> {
        let sources = self.dir_mut(dir).sources.clone();
        let listing = read_listing(&self.images, &sources)?;
        let mut changes = ListingChanges::default();
        self.install_listing(dir, listing, Some(&mut changes));
        inval.inodes.push(dir);
        inval.inodes.extend(changes.nodes);
        inval
            .entries
            .extend(changes.names.into_iter().map(|name| (dir, name)));
        for (child, listed) in changes.dirs {
            if listed {
                self.refresh(child, inval)?;
            } else {
                // Never listed: the kernel knows at most its attributes.
                inval.inodes.push(child);
            }
        }
        Ok(())
    }

    /// Installs a freshly read listing of `dir`, keeping the numbers of known names of
    /// the same kind. A known file or symlink takes the listing's content and
    /// attributes, a known directory its sources (and is then unloaded); a name whose
    /// kind changed gets a new node, and a node whose name vanished leaves the tree.
    /// With `changes`, records what changed for the kernel (an upgrade's reload; a lazy
    /// load under the same images changes nothing, and one after `add_image` only
    /// adds names and sources, which `mark_shared` already reported).
    fn install_listing(
        &mut self,
        dir: u64,
        listing: BTreeMap<Box<[u8]>, Pending>,
        mut changes: Option<&mut ListingChanges>,
    ) {
        let old = std::mem::take(&mut self.dir_mut(dir).children);
        let mut children = Vec::with_capacity(listing.len());
        let mut kept = vec![false; old.len()];
        for (name, pending) in listing {
            let known = old
                .binary_search_by(|(n, _)| n[..].cmp(&name[..]))
                .ok()
                .filter(|&i| {
                    self.nodes[(old[i].1 - 1) as usize].content.kind() == pending.attr.kind
                });
            let ino = match known {
                Some(i) => {
                    kept[i] = true;
                    let ino = old[i].1;
                    let node = &mut self.nodes[(ino - 1) as usize];
                    let mut changed = node.attr != pending.attr;
                    node.attr = pending.attr;
                    match (&mut node.content, pending.content) {
                        (Content::Dir(now), Content::Dir(new)) => {
                            if now.sources != new.sources {
                                let listed = now.listed;
                                now.sources = new.sources;
                                now.loaded = false;
                                if let Some(c) = changes.as_deref_mut() {
                                    c.dirs.push((ino, listed));
                                }
                            }
                        }
                        (Content::File(now), Content::File(new)) => {
                            if !now.same(&new) {
                                *now = new;
                                changed = true;
                            }
                        }
                        (Content::Symlink(now), Content::Symlink(new)) => {
                            if *now != new {
                                *now = new;
                                changed = true;
                            }
                        }
                        (_, new) => unreachable!("known node {ino} is a {:?}", new.kind()),
                    }
                    if let (true, Some(c)) = (changed, changes.as_deref_mut()) {
                        c.nodes.push(ino);
                    }
                    ino
                }
                None => {
                    if let Some(c) = changes.as_deref_mut() {
                        c.names.push(name.clone());
                    }
                    self.push(Node {
                        parent: dir,
                        attr: pending.attr,
                        content: pending.content,
                    })
                }
            };
            children.push((name, ino));
        }
        for ((name, ino), kept) in old.into_iter().zip(kept) {
            if kept {
                continue;
            }
            self.orphan(ino);
            if let Some(c) = changes.as_deref_mut() {
                // A name of another kind is already in `names`: it appeared anew.
                if children
                    .binary_search_by(|(n, _)| n[..].cmp(&name[..]))
                    .is_err()
                {
                    c.names.push(name);
                }
            }
        }
        let d = self.dir_mut(dir);
        d.children = children;
        d.loaded = true;
        d.listed = true;
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

/// The union's rules, without a mount: images built from tiny trees, then the tree the
/// daemon would serve, looked up and listed as the kernel would ask for it.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::squashfs::{build_image, ImageOptions};
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// An image of a tree made by `make` in `dir/NAME/`, at `dir/NAME.sqfs`.
    fn image(dir: &Path, name: &str, make: impl FnOnce(&Path)) -> std::path::PathBuf {
        let root = dir.join(name);
        fs::create_dir_all(&root).unwrap();
        make(&root);
        // One mtime for everything, so an unchanged file's attributes are the same in
        // every image (images built a second apart would otherwise differ).
        fixed_mtimes(&root);
        let out = dir.join(format!("{name}.sqfs"));
        build_image(&root, &out, &ImageOptions::default()).unwrap();
        out
    }

    fn fixed_mtimes(path: &Path) {
        let meta = fs::symlink_metadata(path).unwrap();
        if meta.is_symlink() {
            return;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(path).unwrap() {
                fixed_mtimes(&entry.unwrap().path());
            }
        }
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        fs::File::open(path).unwrap().set_modified(at).unwrap();
    }

    fn write(root: &Path, path: &str, contents: &str) {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, contents).unwrap();
    }

    /// Follows `path` from the union's root by lookups, as the kernel resolves it.
    fn resolve(u: &Union, path: &str) -> Option<(u64, Attr)> {
        let mut at = (UNION, u.attr(UNION).unwrap());
        for name in path.split('/') {
            at = u.lookup(at.0, name.as_bytes()).unwrap()?;
        }
        Some(at)
    }

    fn resolve_in(u: &Union, dir: u64, name: &str) -> u64 {
        u.lookup(dir, name.as_bytes()).unwrap().unwrap().0
    }

    fn names(u: &Union, dir: u64) -> Vec<String> {
        u.list(dir, 0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, name, _, _)| String::from_utf8_lossy(&name).into_owned())
            .collect()
    }

    fn contents(u: &Union, ino: u64) -> String {
        let f = u.file(ino).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = f.image.read_file(&f.loc, 0, &mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn directories_merge_with_the_first_images_mode_and_each_package_has_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let a = image(dir.path(), "a_1", |r| {
            write(r, "usr/bin/a", "a");
            fs::set_permissions(r.join("usr"), fs::Permissions::from_mode(0o755)).unwrap();
        });
        let b = image(dir.path(), "b_1", |r| {
            write(r, "usr/bin/b", "b");
            fs::set_permissions(r.join("usr"), fs::Permissions::from_mode(0o700)).unwrap();
        });
        let u = Union::new();
        u.add_image(&a, "a_1", None).unwrap();
        u.add_image(&b, "b_1", None).unwrap();
        let (bin, _) = resolve(&u, "usr/bin").unwrap();
        assert_eq!(names(&u, bin), vec!["a", "b"]);
        assert_eq!(resolve(&u, "usr").unwrap().1.mode & 0o7777, 0o755);
        assert_eq!(names(&u, ROOT), vec!["a_1", "b_1", "union"]);
        // Each package alone under its own directory: b's has no usr/bin/a.
        let (b_root, _) = u.lookup(ROOT, b"b_1").unwrap().unwrap();
        let (b_usr, attr) = u.lookup(b_root, b"usr").unwrap().unwrap();
        assert_eq!(attr.mode & 0o7777, 0o700);
        let (b_bin, _) = u.lookup(b_usr, b"bin").unwrap().unwrap();
        assert_eq!(names(&u, b_bin), vec!["b"]);
        assert!(u.lookup(UNION, b"nothing").unwrap().is_none());
        assert!(
            u.add_image(&a, "a_1", None).is_err(),
            "an image added twice"
        );
        assert!(
            u.add_image(&a, "union", None).is_err(),
            "a name the mount uses"
        );
    }

    #[test]
    fn a_files_path_in_its_image_is_the_same_from_the_union_and_from_its_package() {
        let dir = tempfile::tempdir().unwrap();
        let a = image(dir.path(), "a_1", |r| write(r, "usr/lib/a/data", "a"));
        let b = image(dir.path(), "b_1", |r| write(r, "usr/lib/b", "b"));
        let u = Union::new();
        u.add_image(&a, "a_1", Some(Path::new("/mnt/a"))).unwrap();
        u.add_image(&b, "b_1", None).unwrap();
        let (data, _) = resolve(&u, "usr/lib/a/data").unwrap();
        let (file, path) = u.file_path(data).unwrap();
        assert_eq!(path, Path::new("usr/lib/a/data"));
        assert_eq!(file.image.backing.as_deref(), Some(Path::new("/mnt/a")));
        let (b_file, _) = resolve(&u, "usr/lib/b").unwrap();
        let (file, path) = u.file_path(b_file).unwrap();
        assert_eq!(
            (path.as_path(), file.image.backing.as_deref()),
            (Path::new("usr/lib/b"), None)
        );
        // The same file seen under its package's own directory.
        let (top, _) = u.lookup(ROOT, b"a_1").unwrap().unwrap();
        let (usr, _) = u.lookup(top, b"usr").unwrap().unwrap();
        let (lib, _) = u.lookup(usr, b"lib").unwrap().unwrap();
        let (a_dir, _) = u.lookup(lib, b"a").unwrap().unwrap();
        let (alone, _) = u.lookup(a_dir, b"data").unwrap().unwrap();
        assert_eq!(u.file_path(alone).unwrap().1, Path::new("usr/lib/a/data"));
        assert!(
            u.file_path(lib).is_none(),
            "a directory has no backing file"
        );
    }

    #[test]
    fn the_first_image_wins_a_name_whatever_the_later_ones_kind() {
        let dir = tempfile::tempdir().unwrap();
        let first = image(dir.path(), "first_1", |r| {
            write(r, "etc/conf", "first");
            write(r, "etc/tool", "a file");
        });
        let second = image(dir.path(), "second_1", |r| {
            write(r, "etc/conf", "second, longer");
            write(r, "etc/tool/inside", "a directory in the second");
            write(r, "etc/other", "only here");
        });
        let u = Union::new();
        u.add_image(&first, "first_1", None).unwrap();
        u.add_image(&second, "second_1", None).unwrap();
        let (conf, attr) = resolve(&u, "etc/conf").unwrap();
        assert_eq!((attr.kind, attr.size), (Kind::File, 5));
        assert_eq!(contents(&u, conf), "first");
        let (_, tool) = resolve(&u, "etc/tool").unwrap();
        assert_eq!(tool.kind, Kind::File, "the later directory is hidden");
        assert!(resolve(&u, "etc/other").is_some());
        let (etc, _) = resolve(&u, "etc").unwrap();
        assert_eq!(names(&u, etc), vec!["conf", "other", "tool"]);
    }

    #[test]
    fn a_replaced_image_takes_the_old_ones_place_and_the_kernel_is_told_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let old = image(dir.path(), "p_1", |r| {
            write(r, "usr/lib/p.so", "old");
            write(r, "usr/lib/gone", "x");
            write(r, "usr/share/kept", "same");
        });
        let other = image(dir.path(), "q_1", |r| write(r, "usr/lib/p.so", "q's"));
        let new = image(dir.path(), "p_2", |r| {
            write(r, "usr/lib/p.so", "new!");
            write(r, "usr/lib/added", "y");
            write(r, "usr/share/kept", "same");
            symlink("p.so", r.join("usr/lib/link")).unwrap();
        });
        let u = Union::new();
        u.add_image(&old, "p_1", None).unwrap();
        u.add_image(&other, "q_1", None).unwrap();
        // The kernel has seen usr/lib listed and p.so, gone and kept looked up.
        let (lib, _) = resolve(&u, "usr/lib").unwrap();
        assert_eq!(names(&u, lib), vec!["gone", "p.so"]);
        let (so, _) = resolve(&u, "usr/lib/p.so").unwrap();
        assert_eq!(contents(&u, so), "old", "p is first: its file wins");
        let (kept, _) = resolve(&u, "usr/share/kept").unwrap();
        let (share, _) = resolve(&u, "usr/share").unwrap();
        let _ = resolve(&u, "usr/lib/gone").unwrap();

        let inval = u.replace_image("p_1", &new, "p_2", None).unwrap();
        // Still first in the order: the new version's file wins over q's, under the
        // same inode number, whose cached pages the kernel must drop.
        let (so_after, attr) = resolve(&u, "usr/lib/p.so").unwrap();
        assert_eq!(so_after, so, "a persisting name keeps its number");
        assert_eq!((contents(&u, so), attr.size), ("new!".to_string(), 4));
        assert!(inval.inodes.contains(&so), "{inval:?}");
        assert!(
            inval.inodes.contains(&lib),
            "the listing changed: {inval:?}"
        );
        for name in ["gone", "added", "link"] {
            assert!(
                inval.entries.contains(&(lib, name.as_bytes().into())),
                "{name} not invalidated: {inval:?}"
            );
        }
        assert_eq!(names(&u, lib), vec!["added", "link", "p.so"]);
        assert!(resolve(&u, "usr/lib/gone").is_none());
        // A file with the same bytes keeps its number, but it is served from another
        // image now, so the kernel drops its pages too, and its directory's listing is
        // re-read: the rule is by source image and place, contents are never compared.
        assert_eq!(resolve(&u, "usr/share/kept").unwrap().0, kept);
        assert!(inval.inodes.contains(&kept), "{inval:?}");
        assert!(inval.inodes.contains(&share), "{inval:?}");
        // q's file, shadowed before and after, is not touched.
        let q_usr = resolve_in(&u, resolve_in(&u, ROOT, "q_1"), "usr");
        let q_so = resolve_in(&u, resolve_in(&u, q_usr, "lib"), "p.so");
        assert_eq!(contents(&u, q_so), "q's");
        assert!(!inval.inodes.contains(&q_so), "{inval:?}");
        assert_eq!(resolve(&u, "usr/share").unwrap().0, share);
        // The mount root shows the new version's directory instead of the old one's.
        assert_eq!(names(&u, ROOT), vec!["p_2", "q_1", "union"]);
        assert!(inval.entries.contains(&(ROOT, b"p_1"[..].into())));
        assert!(
            u.replace_image("p_1", &new, "p_3", None).is_err(),
            "p_1 is gone"
        );
    }

    #[test]
    fn forgetting_listings_keeps_every_inode_number() {
        let dir = tempfile::tempdir().unwrap();
        let a = image(dir.path(), "a_1", |r| write(r, "usr/bin/a", "a"));
        let u = Union::new();
        u.add_image(&a, "a_1", None).unwrap();
        let before = resolve(&u, "usr/bin/a").unwrap();
        let bin = resolve(&u, "usr/bin").unwrap().0;
        u.forget_listings();
        assert_eq!(u.cached_metadata_bytes(), 0);
        assert_eq!(resolve(&u, "usr/bin/a").unwrap(), before);
        assert_eq!(resolve(&u, "usr/bin").unwrap().0, bin);
        assert_eq!(names(&u, bin), vec!["a"]);
    }
}
