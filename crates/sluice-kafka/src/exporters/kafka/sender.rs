//! The producing side: a librdkafka producer, and a batch acknowledged only
//! when every message of it has a delivery report without error.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;
use prometheus_client::metrics::counter::Counter;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use sluice_core::exporter_helper::{SendError, Sender};
use sluice_core::{BuildContext, ComponentError, ComponentId};
use sluice_pdata::Batch;

use super::{KafkaExporterConfig, Plan};

/// The counters the exporter keeps besides the helper's per-item ones.
struct Counters {
    messages_sent: Counter,
    messages_failed: Counter,
    bytes_sent: Counter,
    /// Per extra topic, in [`Plan::extra_topics`] order: copies delivered.
    extra_sent: Vec<Counter>,
}

/// The producer in use and when it was created.
struct Current {
    producer: Arc<FutureProducer>,
    created: Instant,
}

/// The `kafka` exporter's [`Sender`].
pub(crate) struct KafkaSender {
    id: ComponentId,
    config: ClientConfig,
    plan: Plan,
    timeout: Duration,
    /// Created at start; replaced after a failed send (see
    /// [`KafkaSender::replace_after_failure`]).
    producer: RwLock<Option<Current>>,
    counters: Counters,
}

/// Whether a failed delivery is worth retrying.
fn is_permanent(e: &KafkaError) -> bool {
    let code = match e {
        KafkaError::MessageProduction(c) => *c,
        _ => return false,
    };
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::UnsupportedForMessageFormat
            | RDKafkaErrorCode::UnsupportedCompressionType
    )
}

impl KafkaSender {
    pub(crate) fn new(ctx: &BuildContext, config: &KafkaExporterConfig) -> Result<Self, String> {
        let mut c = config.client().client_config(
            &[
                // The Java client's partitioner: the same key lands on the
                // same partition as from Java producers.
                ("partitioner", "murmur2_random".to_string()),
            ],
            &[
                ("enable.idempotence", "true".to_string()),
                ("acks", "all".to_string()),
                ("compression.codec", config.compression.as_str().to_string()),
                // Room for the key and the record's framing.
                (
                    "message.max.bytes",
                    (config.max_message_bytes + 4096).to_string(),
                ),
                (
                    "message.timeout.ms",
                    config.timeout.as_millis().max(1).to_string(),
                ),
            ],
        );
        c.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        // Checked now, so that a bad combination fails the build, not start.
        c.create_native_config().map_err(|e| e.to_string())?;
        let id = ctx.id.to_string();
        let labels = [("exporter", id.as_str())];
        let t = &ctx.telemetry;
        let plan = Plan::new(config);
        let extra_sent = plan
            .extra_topics()
            .map(|topic| {
                t.counter(
                    "sluice_kafka_exporter_extra_topic_messages_sent",
                    "Span copies to extra_topics the brokers acknowledged (also in messages_sent)",
                    &[("exporter", id.as_str()), ("topic", topic)],
                )
            })
            .collect();
        Ok(KafkaSender {
            id: ctx.id.clone(),
            config: c,
            plan,
            timeout: config.timeout,
            producer: RwLock::new(None),
            counters: Counters {
                messages_sent: t.counter(
                    "sluice_kafka_exporter_messages_sent",
                    "Kafka messages the brokers acknowledged",
                    &labels,
                ),
                messages_failed: t.counter(
                    "sluice_kafka_exporter_messages_failed",
                    "Kafka messages that failed to be delivered (their batch is retried or dropped)",
                    &labels,
                ),
                bytes_sent: t.counter(
                    "sluice_kafka_exporter_sent_bytes",
                    "Bytes of message values the brokers acknowledged (before compression)",
                    &labels,
                ),
                extra_sent,
            },
        })
    }

    fn create_producer(&self) -> Result<Arc<FutureProducer>, ComponentError> {
        let p: FutureProducer = self.config.create().map_err(|e| {
            ComponentError::new(format!(
                "exporter {}: cannot create the Kafka producer: {e}",
                self.id
            ))
        })?;
        Ok(Arc::new(p))
    }

    fn producer(&self) -> Result<Arc<FutureProducer>, SendError> {
        if let Some(c) = self
            .producer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Ok(c.producer.clone());
        }
        Err(SendError::retryable(format!(
            "exporter {} is not started",
            self.id
        )))
    }

    /// Replaces `failed` with a new producer, unless it was replaced already
    /// or was created less than `timeout` ago.
    ///
    /// An idempotent producer keeps a producer id and sequence numbers that
    /// the brokers must remember. When they do not (a broker that lost its
    /// state, an id expired during a long outage), librdkafka answers with
    /// epoch bumps that a broker may refuse again and again
    /// (`UNKNOWN_PRODUCER_ID`), and every message times out. A new producer
    /// starts from a new id. Messages of the old one still in flight are
    /// purged; their batches fail and are retried from the queue.
    fn replace_after_failure(&self, failed: &Arc<FutureProducer>) {
        let fatal = failed.client().fatal_error();
        let old = {
            let mut slot = self.producer.write().unwrap_or_else(|p| p.into_inner());
            let Some(cur) = slot.as_ref() else { return };
            if !Arc::ptr_eq(&cur.producer, failed)
                || (fatal.is_none() && cur.created.elapsed() < self.timeout)
            {
                return;
            }
            let new = match self.create_producer() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(exporter = %self.id, error = %e, "cannot create a new Kafka producer");
                    return;
                }
            };
            slot.replace(Current {
                producer: new,
                created: Instant::now(),
            })
        };
        match fatal {
            Some((code, reason)) => {
                tracing::error!(exporter = %self.id, ?code, reason, "the Kafka producer failed fatally; replaced it")
            }
            None => {
                tracing::info!(exporter = %self.id, "Kafka deliveries failed; replaced the producer")
            }
        }
        // Dropping a producer purges and flushes it, which blocks.
        if let Some(old) = old {
            tokio::task::spawn_blocking(move || drop(old));
        }
    }
}

#[async_trait]
impl Sender for KafkaSender {
    async fn start(&self) -> Result<(), ComponentError> {
        let producer = self.create_producer()?;
        *self.producer.write().unwrap_or_else(|p| p.into_inner()) = Some(Current {
            producer,
            created: Instant::now(),
        });
        Ok(())
    }

    async fn send(&self, batch: &Batch) -> Result<(), SendError> {
        let producer = self.producer()?;
        let built = self.plan.build(batch);
        let queue_timeout = Timeout::After(self.timeout);
        let deliveries = join_all(built.messages.iter().map(|m| {
            let mut record = FutureRecord::<[u8], [u8]>::to(&m.topic).payload(m.value.as_ref());
            if let Some(k) = &m.key {
                record = record.key(k.as_slice());
            }
            producer.send(record, queue_timeout)
        }))
        .await;

        let (mut sent, mut sent_bytes, mut failed, mut failed_items) = (0u64, 0u64, 0u64, 0usize);
        let mut extra_sent = vec![0u64; self.counters.extra_sent.len()];
        let mut permanent = None;
        let mut retryable = None;
        for (m, result) in built.messages.iter().zip(deliveries) {
            match result {
                Ok(_) => {
                    sent += 1;
                    sent_bytes += m.value.len() as u64;
                    if let Some(i) = m.extra {
                        extra_sent[i] += 1;
                    }
                }
                Err((e, _)) => {
                    failed += 1;
                    failed_items += m.items;
                    let text = format!("topic {}: {e}", m.topic);
                    if is_permanent(&e) {
                        permanent.get_or_insert(text);
                    } else {
                        retryable.get_or_insert(text);
                    }
                }
            }
        }
        self.counters.messages_sent.inc_by(sent);
        self.counters.bytes_sent.inc_by(sent_bytes);
        self.counters.messages_failed.inc_by(failed);
        for (c, n) in self.counters.extra_sent.iter().zip(extra_sent) {
            if n > 0 {
                c.inc_by(n);
            }
        }
        if failed > 0 {
            self.replace_after_failure(&producer);
        }
        match (retryable, permanent) {
            (Some(m), _) => Err(SendError::retryable(format!(
                "{failed} of {} messages ({failed_items} items) not delivered; first: {m}",
                built.messages.len()
            ))),
            (None, Some(m)) => Err(SendError::Permanent(format!(
                "{failed} of {} messages ({failed_items} items) refused; first: {m}",
                built.messages.len()
            ))),
            (None, None) if built.rejected > 0 => Err(SendError::PartialSuccess {
                rejected: built.rejected,
                message: "items larger than max_message_bytes on their own".to_string(),
            }),
            (None, None) => Ok(()),
        }
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let producer = self
            .producer
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(Current { producer: p, .. }) = producer {
            // The helper has waited for its sends; this only hands over what
            // librdkafka may still hold, bounded.
            let id = self.id.clone();
            let flushed = tokio::task::spawn_blocking(move || {
                p.flush(Timeout::After(Duration::from_secs(5)))
            })
            .await;
            if let Ok(Err(e)) = flushed {
                tracing::warn!(exporter = %id, error = %e, "Kafka producer flush at shutdown");
            }
        }
        Ok(())
    }
}
