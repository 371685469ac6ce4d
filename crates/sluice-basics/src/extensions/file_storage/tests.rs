use sluice_core::factory::parse_config;
use sluice_core::{Lifecycle, Storage};

use super::*;

fn config(dir: &std::path::Path, create: bool) -> FileStorageConfig {
    FileStorageConfig {
        directory: dir.to_path_buf(),
        create_directory: create,
        fsync: false,
        max_size_mib: 1,
    }
}

#[tokio::test]
async fn queues_get_their_own_directory_and_survive_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let storage = FileStorage::new("file_storage", config(&root, true).options());
    {
        let (q, recovery) = storage.open_queue("otlp_a").unwrap();
        assert_eq!(recovery.records, 0);
        q.push(b"one").await.unwrap();
        q.push(b"two").await.unwrap();
        let (q2, _) = storage.open_queue("otlp_b").unwrap();
        q2.push(b"other").await.unwrap();
    }
    assert!(root.join("otlp_a").is_dir() && root.join("otlp_b").is_dir());
    let (q, recovery) = storage.open_queue("otlp_a").unwrap();
    assert_eq!(
        recovery.records, 2,
        "both records replay, not the other queue's"
    );
    assert_eq!(q.next().await.map(|(_, b)| b), Some(b"one".to_vec()));
}

#[tokio::test]
async fn max_size_bounds_each_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = FileStorage::new("file_storage", config(tmp.path(), true).options());
    let (q, _) = storage.open_queue("q").unwrap();
    let big = vec![7u8; 300 * 1024];
    let mut pushed = 0;
    let mut refused = false;
    for _ in 0..8 {
        match q.push(&big).await {
            Ok(_) => pushed += 1,
            Err(sluice_core::persistent_queue::QueueError::Full { .. }) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused, "1 MiB must not hold 8 x 300 KiB");
    assert!((1..=3).contains(&pushed), "{pushed}");
}

#[tokio::test]
async fn a_missing_directory_is_an_error_without_create_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let ext = FileStorageExtension::new(FileStorage::new(
        "file_storage/x",
        config(&missing, false).options(),
    ));
    let err = ext.start().await.unwrap_err().to_string();
    assert!(
        err.contains("file_storage/x") && err.contains("does not exist"),
        "{err}"
    );
    assert!(ext.storage().is_some(), "it is a storage extension");
}

#[test]
fn config_validation() {
    let v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("directory: /tmp/x\nmax_size_mib: 0\n").unwrap();
    let errs = parse_config::<FileStorageConfig>(&v)
        .err()
        .expect("invalid");
    assert_eq!(errs[0].path, "max_size_mib");
    let v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("directory: /tmp/x\ncompaction: {}\n").unwrap();
    let errs = parse_config::<FileStorageConfig>(&v)
        .err()
        .expect("invalid");
    assert!(
        errs[0].message.contains("unknown field `compaction`"),
        "{errs:?}"
    );
}

#[test]
fn key_value_stores_survive_reopening_and_are_exclusive() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = FileStorage::new(
        "file_storage",
        config(&tmp.path().join("s"), true).options(),
    );
    {
        let kv = storage.open_store("receiver_filelog").unwrap();
        assert_eq!(kv.get("offsets").unwrap(), None);
        kv.set("offsets", b"one").unwrap();
        kv.set("offsets", b"two").unwrap();
        kv.set("other", b"x").unwrap();
        kv.delete("other").unwrap();
        kv.delete("never-set").unwrap();
        let second = storage.open_store("receiver_filelog");
        assert!(
            second.err().expect("locked").to_string().contains("in use"),
            "a second open of the same store must fail while the first lives"
        );
        assert!(
            kv.set("../escape", b"x").is_err(),
            "keys cannot leave the store"
        );
        assert!(kv.set("LOCK", b"x").is_err());
    }
    let kv = storage.open_store("receiver_filelog").unwrap();
    assert_eq!(kv.get("offsets").unwrap(), Some(b"two".to_vec()));
    assert_eq!(kv.get("other").unwrap(), None);
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("s/receiver_filelog"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".tmp")),
        "no temporary file is left behind: {names:?}"
    );
}
