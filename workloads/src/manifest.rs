//! Debian closure manifests (deb-manifest/1). (Being written.)
