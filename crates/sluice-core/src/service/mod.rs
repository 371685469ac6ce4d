//! The running service: builds the component graph from a [`ValidConfig`],
//! starts it in order and shuts it down in order, draining.
//!
//! Graph rules (the OpenTelemetry Collector's):
//! - one exporter instance per exporter id, shared by every pipeline that
//!   lists it;
//! - one processor instance per (pipeline, processor id), chained in the
//!   pipeline's order by direct calls (no channel between processors);
//! - one receiver instance per receiver id; for each signal it gets the
//!   fan-out over the heads of the pipelines of that signal that list it.
//!
//! Start: metrics endpoint, extensions, exporters, processors, receivers.
//! Shutdown (one deadline for all of it): receivers stop taking data while
//! processors flush (processors pass late data through after flushing, so
//! requests still in flight complete); then exporters drain their queues;
//! then extensions stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use crate::component::{
    BuildContext, ComponentError, ComponentId, Exporter, Extension, Extensions, Health, Kind,
    Processor, Receiver, ServiceState, SignalConsumers,
};
use crate::config::ValidConfig;
use crate::consumer::{ConsumerRef, FanOut};
use crate::factory::{BuildError, Builder, Registry};
use crate::telemetry::{serve_metrics, MetricsLevel, Telemetry};

struct Named<T: ?Sized> {
    label: String,
    inner: Arc<T>,
}

/// A built, startable service.
pub struct Service {
    telemetry: Arc<Telemetry>,
    health: Health,
    metrics_address: Option<String>,
    shutdown_timeout: Duration,
    extensions: Vec<Named<dyn Extension>>,
    exporters: Vec<Named<dyn Exporter>>,
    /// In pipeline order, first processor first.
    processors: Vec<Named<dyn Processor>>,
    receivers: Vec<Named<dyn Receiver>>,
    metrics_server: Option<(CancellationToken, JoinHandle<()>)>,
    started: Started,
}

#[derive(Default)]
struct Started {
    extensions: usize,
    exporters: usize,
    processors: usize,
    receivers: usize,
}

fn wrong_kind(kind: Kind, id: &ComponentId) -> BuildError {
    BuildError::new(format!(
        "internal: {id} is registered as something other than a {kind}"
    ))
}

impl Service {
    /// Builds every component; nothing runs until [`Service::start`].
    pub fn build(cfg: &ValidConfig, registry: &Registry) -> Result<Service, BuildError> {
        let metrics_level = cfg.telemetry.metrics.level;
        let telemetry = Telemetry::new(metrics_level);
        let health = Health::default();
        let ctx = |kind: Kind, id: &ComponentId| BuildContext {
            id: id.clone(),
            kind,
            pipeline: None,
            signal: None,
            signals: cfg.signals_of(kind, id),
            telemetry: telemetry.clone(),
            health: health.clone(),
            extensions: Extensions::default(),
        };
        let entry = |kind: Kind, id: &ComponentId| {
            let comp = cfg.component(kind, id).ok_or_else(|| {
                BuildError::new(format!("internal: {kind} {id} was not validated"))
            })?;
            let e = registry
                .get(kind, id.type_name())
                .ok_or_else(|| BuildError::new(format!("internal: no factory for {kind} {id}")))?;
            Ok::<_, BuildError>((comp, e))
        };
        let fail = |kind: Kind, id: &ComponentId, e: BuildError| {
            BuildError::new(format!("{} {id}: {e}", kind.as_str()))
        };

        let mut extensions = Vec::new();
        let mut extension_map: BTreeMap<ComponentId, Arc<dyn Extension>> = BTreeMap::new();
        for id in &cfg.extensions {
            let (comp, e) = entry(Kind::Extension, id)?;
            let Builder::Extension(build) = &e.build else {
                return Err(wrong_kind(Kind::Extension, id));
            };
            let inner = build(ctx(Kind::Extension, id), &comp.config)
                .map_err(|e| fail(Kind::Extension, id, e))?;
            extension_map.insert(id.clone(), inner.clone());
            extensions.push(Named {
                label: format!("extension {id}"),
                inner,
            });
        }
        // Everything built after the extensions can use them.
        let extension_map = Extensions::new(extension_map);
        let ctx = |kind: Kind, id: &ComponentId| BuildContext {
            extensions: extension_map.clone(),
            ..ctx(kind, id)
        };

        // Exporters: one per id.
        let mut exporter_ids: Vec<&ComponentId> = Vec::new();
        for p in &cfg.pipelines {
            for id in &p.exporters {
                if !exporter_ids.contains(&id) {
                    exporter_ids.push(id);
                }
            }
        }
        let mut exporters = Vec::new();
        let mut exporter_by_id: BTreeMap<&ComponentId, ConsumerRef> = BTreeMap::new();
        for id in exporter_ids {
            let (comp, e) = entry(Kind::Exporter, id)?;
            let Builder::Exporter(build) = &e.build else {
                return Err(wrong_kind(Kind::Exporter, id));
            };
            let inner = build(ctx(Kind::Exporter, id), &comp.config)
                .map_err(|e| fail(Kind::Exporter, id, e))?;
            exporter_by_id.insert(id, inner.clone());
            exporters.push(Named {
                label: format!("exporter {id}"),
                inner,
            });
        }

        // Pipelines: processors chained back to front.
        let mut processors = Vec::new();
        let mut heads: Vec<(&crate::config::Pipeline, ConsumerRef)> = Vec::new();
        for p in &cfg.pipelines {
            let mut next = FanOut::of(
                p.exporters
                    .iter()
                    .map(|id| exporter_by_id[id].clone())
                    .collect(),
            );
            let mut chain = Vec::new();
            for id in p.processors.iter().rev() {
                let (comp, e) = entry(Kind::Processor, id)?;
                let Builder::Processor(build) = &e.build else {
                    return Err(wrong_kind(Kind::Processor, id));
                };
                let mut c = ctx(Kind::Processor, id);
                c.pipeline = Some(p.id.to_string());
                c.signal = Some(p.id.signal);
                c.signals = vec![p.id.signal];
                let inner =
                    build(c, &comp.config, next).map_err(|e| fail(Kind::Processor, id, e))?;
                next = inner.clone();
                chain.push(Named {
                    label: format!("processor {id} in pipeline {}", p.id),
                    inner,
                });
            }
            chain.reverse();
            processors.extend(chain);
            heads.push((p, next));
        }

        // Receivers: one per id, fanning out to its pipelines per signal.
        let mut receiver_ids: Vec<&ComponentId> = Vec::new();
        for p in &cfg.pipelines {
            for id in &p.receivers {
                if !receiver_ids.contains(&id) {
                    receiver_ids.push(id);
                }
            }
        }
        let mut receivers = Vec::new();
        for id in receiver_ids {
            let (comp, e) = entry(Kind::Receiver, id)?;
            let Builder::Receiver(build) = &e.build else {
                return Err(wrong_kind(Kind::Receiver, id));
            };
            let mut consumers = SignalConsumers::default();
            for signal in sluice_pdata::Signal::ALL {
                let targets: Vec<ConsumerRef> = heads
                    .iter()
                    .filter(|(p, _)| p.id.signal == signal && p.receivers.contains(id))
                    .map(|(_, head)| head.clone())
                    .collect();
                if !targets.is_empty() {
                    consumers.set(signal, FanOut::of(targets));
                }
            }
            let inner = build(ctx(Kind::Receiver, id), &comp.config, consumers)
                .map_err(|e| fail(Kind::Receiver, id, e))?;
            receivers.push(Named {
                label: format!("receiver {id}"),
                inner,
            });
        }

        for (kind, id) in &cfg.unused {
            tracing::warn!(component = %id, kind = %kind, "configured but used by no pipeline; not started");
        }

        Ok(Service {
            telemetry,
            health,
            metrics_address: (metrics_level != MetricsLevel::None)
                .then(|| cfg.telemetry.metrics.address.clone()),
            shutdown_timeout: cfg.shutdown_timeout,
            extensions,
            exporters,
            processors,
            receivers,
            metrics_server: None,
            started: Started::default(),
        })
    }

    pub fn telemetry(&self) -> Arc<Telemetry> {
        self.telemetry.clone()
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Starts everything in order. On failure, stops what already started
    /// and returns the error naming the component.
    pub async fn start(&mut self) -> Result<(), ComponentError> {
        self.health.set(ServiceState::Starting);
        if let Err(e) = self.start_all().await {
            self.shutdown().await;
            return Err(e);
        }
        self.health.set(ServiceState::Running);
        Ok(())
    }

    async fn start_all(&mut self) -> Result<(), ComponentError> {
        if let Some(addr) = &self.metrics_address {
            let listener = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| {
                    ComponentError::new(format!(
                        "service::telemetry::metrics::address: cannot listen on {addr}: {e}"
                    ))
                })?;
            let token = CancellationToken::new();
            let handle = tokio::spawn(serve_metrics(
                self.telemetry.clone(),
                listener,
                token.clone(),
            ));
            self.metrics_server = Some((token, handle));
        }
        async fn start_each<T: ?Sized + crate::component::Lifecycle>(
            items: &[Named<T>],
            count: &mut usize,
        ) -> Result<(), ComponentError> {
            for n in items {
                n.inner.start().await.map_err(|e| {
                    ComponentError::new(format!("{}: failed to start: {e}", n.label))
                })?;
                *count += 1;
            }
            Ok(())
        }
        start_each(&self.extensions, &mut self.started.extensions).await?;
        start_each(&self.exporters, &mut self.started.exporters).await?;
        start_each(&self.processors, &mut self.started.processors).await?;
        start_each(&self.receivers, &mut self.started.receivers).await?;
        Ok(())
    }

    /// Shuts down what was started, in order, within the shutdown timeout.
    pub async fn shutdown(&mut self) {
        self.health.set(ServiceState::Stopping);
        let deadline = Instant::now() + self.shutdown_timeout;
        let started = std::mem::take(&mut self.started);

        let receivers = stop_all(&self.receivers[..started.receivers], deadline);
        let processors = async {
            // First to last, so a flush passes through processors not yet stopped.
            for n in &self.processors[..started.processors] {
                stop_one(n, deadline).await;
            }
        };
        futures::join!(receivers, processors);
        stop_all(&self.exporters[..started.exporters], deadline).await;
        stop_all(&self.extensions[..started.extensions], deadline).await;
        if let Some((token, handle)) = self.metrics_server.take() {
            token.cancel();
            let _ = handle.await;
        }
    }
}

async fn stop_one<T: ?Sized + crate::component::Lifecycle>(n: &Named<T>, deadline: Instant) {
    match timeout_at(deadline, n.inner.shutdown()).await {
        Ok(Ok(())) => tracing::debug!(component = %n.label, "stopped"),
        Ok(Err(e)) => tracing::error!(component = %n.label, error = %e, "failed to stop cleanly"),
        Err(_) => tracing::error!(
            component = %n.label,
            "did not stop before the shutdown deadline; data it still held is lost"
        ),
    }
}

async fn stop_all<T: ?Sized + crate::component::Lifecycle>(items: &[Named<T>], deadline: Instant) {
    join_all(items.iter().map(|n| stop_one(n, deadline))).await;
}

#[cfg(test)]
mod tests;
