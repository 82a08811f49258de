//! Hot reload of the config file. Kubernetes updates a mounted ConfigMap by
//! swapping the `..data` symlink in its directory, so the directory is
//! watched, not the file. An invalid file keeps the last good config.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{Config, ConfigError};
use crate::registry::Registry;

/// Events closer together than this are one change.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Watches `path`'s directory until the returned watcher is dropped.
pub fn watch(path: PathBuf, registry: Arc<Registry>) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            apply(&path, &registry);
        }
    });
    Ok(watcher)
}

/// Logs the policy keys that are accepted but no longer have an effect.
pub fn warn_unused(config: &Config) {
    for key in config.unused_keys() {
        tracing::warn!(
            key,
            "no longer has an effect: every change pays its own pause in the plan (docs/policy.md); remove it"
        );
    }
}

/// Reads the file once; applies it when valid and changed. A check that
/// panics rejects the file like an invalid one: the watch goes on.
pub fn apply(path: &Path, registry: &Registry) {
    let metrics = &registry.metrics;
    let loaded = std::panic::catch_unwind(|| Config::load(path)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(ConfigError::Invalid {
            field: "config".into(),
            message: format!("checking the file failed: {what}"),
        })
    });
    match loaded {
        Ok(config) => {
            let changed = config != registry.config();
            metrics.record_config_valid(changed);
            if changed {
                warn_unused(&config);
                registry.reload(config);
                tracing::info!(path = %path.display(), "config reloaded");
            }
        }
        Err(e) => {
            metrics.record_config_rejected();
            tracing::error!(path = %path.display(), error = %e, "config rejected; keeping the last good config");
        }
    }
}
