//! Loop devices, attached the way `losetup` and snapd attach them since Linux 5.8: ask
//! `/dev/loop-control` for a free device, then one `LOOP_CONFIGURE` ioctl sets the
//! backing file, the flags and (optionally) direct I/O at once, where the older
//! `LOOP_SET_FD` + `LOOP_SET_STATUS64` pair took two calls and a window in between.
//!
//! Every image device is attached read-only with `LO_FLAGS_AUTOCLEAR` (a filesystem to
//! measure on, read-write): the kernel detaches it
//! when its last user goes, i.e. when our descriptor is closed after the squashfs mount
//! took its own reference, and again when that mount goes. So nothing needs detaching on
//! teardown, and a SIGKILLed harness leaves no device behind (its private mount
//! namespace dies with it, which releases the mounts, which release the devices).

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>` (Linux 5.8).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// An attached loop device. Dropping it closes our descriptor; with autoclear the kernel
/// then detaches the device unless a mount holds it.
#[derive(Debug)]
pub struct LoopDevice {
    pub path: PathBuf,
    file: File,
}

impl LoopDevice {
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

/// Another process may take the device `LOOP_CTL_GET_FREE` offered before we configure
/// it (EBUSY); then we ask again, as `losetup` does.
const ATTACH_ATTEMPTS: usize = 64;

/// Attaches `image` read-only to a free loop device, with autoclear, and with direct I/O
/// when `direct_io` (reads bypass the page cache of the image file, so the image's pages
/// are not cached twice: once for the file and once for the squashfs block device).
pub fn attach(image: &Path, direct_io: bool) -> Result<LoopDevice> {
    let mut flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    if direct_io {
        flags |= LO_FLAGS_DIRECT_IO;
    }
    attach_with(image, false, flags)
}

/// Attaches `image` read-write to a free loop device, with autoclear and direct I/O:
/// the backing of a filesystem the harness makes to measure on (`--fs`). Direct I/O
/// keeps the image file's own page cache out of the way, so the filesystem on the
/// device is cached once, as on a disk, and a dropped cache is dropped all the way.
pub fn attach_read_write(image: &Path) -> Result<LoopDevice> {
    attach_with(image, true, LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO)
}

fn attach_with(image: &Path, writable: bool, flags: u32) -> Result<LoopDevice> {
    let backing = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(image)
        .with_context(|| format!("opening {}", image.display()))?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/loop-control")
        .context("opening /dev/loop-control")?;
    for _ in 0..ATTACH_ATTEMPTS {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(std::io::Error::last_os_error())
                .context("LOOP_CTL_GET_FREE on /dev/loop-control");
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let device = match OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            // udev may not have created the node yet, or another process raced us.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        let mut config = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: 0,
                lo_sizelimit: 0,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: flags,
                lo_file_name: [0; LO_NAME_SIZE],
                lo_crypt_name: [0; LO_NAME_SIZE],
                lo_encrypt_key: [0; 32],
                lo_init: [0; 2],
            },
            reserved: [0; 8],
        };
        let name = image.as_os_str().as_encoded_bytes();
        let take = name.len().min(LO_NAME_SIZE - 1);
        config.info.lo_file_name[..take].copy_from_slice(&name[..take]);
        // SAFETY: `config` is a valid `struct loop_config` that outlives the call.
        let rc = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &config) };
        if rc == 0 {
            return Ok(LoopDevice { path, file: device });
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EBUSY) {
            continue;
        }
        return Err(err).with_context(|| {
            format!(
                "LOOP_CONFIGURE of {} with {} (needs Linux 5.8)",
                path.display(),
                image.display()
            )
        });
    }
    bail!(
        "no free loop device for {} after {ATTACH_ATTEMPTS} attempts",
        image.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_config_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
