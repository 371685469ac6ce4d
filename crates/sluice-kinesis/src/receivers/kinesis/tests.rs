use md5::{Digest, Md5};
use prost::Message;
use sluice_pdata::haystack::{otlp_from_spans, Span, SpanBatch, Tag};

use super::decode::{decode, Decoded, Encoding};
use super::kpl::{
    aggregate, deaggregate, AggregatedRecord, Deaggregated, PlainReason, Record, MAGIC,
};
use super::validate::{
    Invalid, Kept, OversizeAction, ValidationConfig, ValidationCounters, Validator,
    MIN_START_TIME_MICROS,
};

fn span(n: u32) -> Span {
    Span {
        trace_id: format!("trace-{n}"),
        span_id: format!("span-{n}"),
        parent_span_id: String::new(),
        service_name: "svc".into(),
        operation_name: "op".into(),
        start_time: 1_700_000_000_000_000 + i64::from(n),
        duration: 1500,
        logs: vec![],
        tags: vec![Tag::string("http.method", "GET"), Tag::long("status", 200)],
    }
}

/// Frames a protobuf body as an aggregated record with its MD5 trailer.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(&Md5::digest(body));
    out
}

fn hand_built() -> (Vec<u8>, Vec<Vec<u8>>) {
    let datas: Vec<Vec<u8>> = (0..3).map(|n| span(n).encode_to_vec()).collect();
    let agg = AggregatedRecord {
        partition_key_table: vec!["a".into(), "b".into()],
        explicit_hash_key_table: vec!["123".into()],
        records: vec![
            Record {
                partition_key_index: 0,
                explicit_hash_key_index: Some(0),
                data: datas[0].clone(),
                tags: vec![],
            },
            Record {
                partition_key_index: 1,
                explicit_hash_key_index: None,
                data: datas[1].clone(),
                tags: vec![super::kpl::KplTag {
                    key: "k".into(),
                    value: Some("v".into()),
                }],
            },
            Record {
                partition_key_index: 7,
                explicit_hash_key_index: None,
                data: datas[2].clone(),
                tags: vec![],
            },
        ],
    };
    (frame(&agg.encode_to_vec()), datas)
}

#[test]
fn deaggregates_a_hand_built_record() {
    let (record, datas) = hand_built();
    let Deaggregated::Aggregated(users) = deaggregate(&record) else {
        panic!("not de-aggregated");
    };
    assert_eq!(users.len(), 3);
    for (u, d) in users.iter().zip(&datas) {
        assert_eq!(&u.data, d);
    }
    assert_eq!(users[0].partition_key.as_deref(), Some("a"));
    assert_eq!(users[1].partition_key.as_deref(), Some("b"));
    // An index outside the table leaves the key unknown, the data is kept.
    assert_eq!(users[2].partition_key, None);
    let decoded: Vec<Span> = users
        .iter()
        .map(|u| Span::decode(u.data.as_slice()).unwrap())
        .collect();
    assert_eq!(decoded, (0..3).map(span).collect::<Vec<_>>());
}

#[test]
fn aggregate_helper_matches_the_format() {
    let a = span(1).encode_to_vec();
    let b = span(2).encode_to_vec();
    let record = aggregate([("k1", a.as_slice()), ("k1", b.as_slice())]);
    assert_eq!(&record[..4], &MAGIC);
    let body = &record[4..record.len() - 16];
    assert_eq!(&record[record.len() - 16..], Md5::digest(body).as_slice());
    let agg = AggregatedRecord::decode(body).unwrap();
    assert_eq!(agg.partition_key_table, vec!["k1".to_string()]);
    assert_eq!(agg.records.len(), 2);
    let d = deaggregate(&record);
    assert_eq!(d.len(), 2);
    let mut seen = Vec::new();
    d.for_each(|data| seen.push(data.to_vec()));
    assert_eq!(seen, vec![a, b]);
}

#[test]
fn bad_digest_is_a_plain_record() {
    let (mut record, _) = hand_built();
    let last = record.len() - 1;
    record[last] ^= 0xFF;
    assert_eq!(
        deaggregate(&record),
        Deaggregated::Plain(&record, PlainReason::BadDigest)
    );
    // A flipped body byte also breaks the digest.
    let (mut record, _) = hand_built();
    record[6] ^= 0x01;
    assert!(matches!(
        deaggregate(&record),
        Deaggregated::Plain(_, PlainReason::BadDigest)
    ));
}

#[test]
fn short_unmarked_and_undecodable_records_are_plain() {
    let plain = span(1).encode_to_vec();
    assert_eq!(
        deaggregate(&plain),
        Deaggregated::Plain(&plain, PlainReason::NoMagic)
    );
    let short = [MAGIC.as_slice(), &[0u8; 15]].concat();
    assert_eq!(
        deaggregate(&short),
        Deaggregated::Plain(&short, PlainReason::TooShort)
    );
    assert_eq!(
        deaggregate(&MAGIC[..2]),
        Deaggregated::Plain(&MAGIC[..2], PlainReason::NoMagic)
    );
    // Right digest over bytes that are not an AggregatedRecord.
    let junk = frame(&[0xFF, 0xFF, 0xFF]);
    assert_eq!(
        deaggregate(&junk),
        Deaggregated::Plain(&junk, PlainReason::BadProtobuf)
    );
    // Magic + digest of an empty body: an aggregate of zero records.
    let empty = frame(&[]);
    assert_eq!(deaggregate(&empty), Deaggregated::Aggregated(vec![]));
}

#[test]
fn decodes_every_encoding() {
    let s = span(1);
    assert_eq!(
        decode(Encoding::HaystackProto, &s.encode_to_vec()).unwrap(),
        Decoded::Spans(vec![s.clone()])
    );
    let batch = SpanBatch {
        spans: vec![span(1), span(2)],
    };
    assert_eq!(
        decode(Encoding::HaystackBatch, &batch.encode_to_vec()).unwrap(),
        Decoded::Spans(batch.spans.clone())
    );
    let otlp = otlp_from_spans(&batch.spans);
    assert_eq!(
        decode(Encoding::OtlpProto, &otlp.encode_to_vec()).unwrap(),
        Decoded::Otlp(otlp.clone())
    );
    let json = sluice_pdata::to_json(&sluice_pdata::Payload::Traces(otlp.clone()));
    assert_eq!(
        decode(Encoding::OtlpJson, &json).unwrap(),
        Decoded::Otlp(otlp)
    );
    for e in [
        Encoding::HaystackProto,
        Encoding::HaystackBatch,
        Encoding::OtlpProto,
        Encoding::OtlpJson,
    ] {
        let err = decode(e, &[0xFF, 0xFF, 0xFF]).unwrap_err();
        assert!(err.to_string().contains(e.as_str()), "{err}");
    }
}

fn validator() -> Validator {
    Validator::new(ValidationConfig::default())
}

#[test]
fn every_invalid_reason_drops_and_counts() {
    type Spoil = Box<dyn Fn(&mut Span)>;
    let cases: Vec<(Invalid, Spoil)> = vec![
        (Invalid::ServiceName, Box::new(|s| s.service_name.clear())),
        (
            Invalid::OperationName,
            Box::new(|s| s.operation_name.clear()),
        ),
        (Invalid::SpanId, Box::new(|s| s.span_id.clear())),
        (Invalid::TraceId, Box::new(|s| s.trace_id.clear())),
        (
            Invalid::StartTime,
            Box::new(|s| s.start_time = 1_700_000_000_000), // milliseconds
        ),
        (Invalid::Duration, Box::new(|s| s.duration = -1)),
    ];
    let v = validator();
    let counters = ValidationCounters::default();
    let mut spans = vec![span(100)];
    for (n, (reason, spoil)) in cases.iter().enumerate() {
        let mut s = span(n as u32);
        spoil(&mut s);
        assert_eq!(v.check(&mut s.clone()).invalid, Some(*reason));
        spans.push(s);
    }
    v.apply(&mut spans, &counters);
    assert_eq!(spans, vec![span(100)]);
    for r in Invalid::ALL {
        assert_eq!(counters.invalid(r).get(), 1, "{}", r.as_str());
    }
    assert_eq!(counters.oversize.get(), 0);
}

#[test]
fn rules_apply_in_order_and_bounds_are_inclusive() {
    let v = validator();
    let mut s = span(1);
    s.duration = -5;
    s.trace_id.clear();
    s.service_name.clear();
    assert_eq!(v.check(&mut s).invalid, Some(Invalid::ServiceName));
    let mut s = span(1);
    s.duration = -5;
    s.start_time = 0;
    assert_eq!(v.check(&mut s).invalid, Some(Invalid::StartTime));
    let mut s = span(1);
    s.start_time = MIN_START_TIME_MICROS;
    s.duration = 0;
    assert_eq!(v.check(&mut s).invalid, None);
    s.start_time = MIN_START_TIME_MICROS - 1;
    assert_eq!(v.check(&mut s).invalid, Some(Invalid::StartTime));
}

#[test]
fn oversize_span_is_truncated_keeping_listed_tags() {
    let mut s = span(1);
    s.tags.push(Tag::string("big", "x".repeat(500)));
    let limit = 200;
    assert!(s.encoded_len() > limit);
    let v = Validator::new(ValidationConfig {
        max_span_size: limit,
        keep_tags: vec!["status".into()],
        ..ValidationConfig::default()
    });
    let counters = ValidationCounters::default();
    let mut spans = vec![s, span(2)];
    v.apply(&mut spans, &counters);
    assert_eq!(spans.len(), 2);
    assert_eq!(
        spans[0].tags,
        vec![
            Tag::long("status", 200),
            Tag::bool("sluice.tags_truncated", true)
        ]
    );
    assert_eq!(spans[1], span(2), "small span unchanged");
    assert_eq!(counters.oversize.get(), 1);
}

#[test]
fn oversize_log_only_changes_nothing() {
    let mut s = span(1);
    s.tags.push(Tag::string("big", "x".repeat(500)));
    let v = Validator::new(ValidationConfig {
        max_span_size: 100,
        oversize_action: OversizeAction::Log,
        ..ValidationConfig::default()
    });
    let mut checked = s.clone();
    let outcome = v.check(&mut checked);
    assert_eq!(outcome.size, Kept::OversizeLogged);
    assert_eq!(outcome.invalid, None);
    assert_eq!(checked, s);
}

#[test]
fn oversize_and_invalid_counts_both_and_drops() {
    let mut s = span(1);
    s.tags.push(Tag::string("big", "x".repeat(500)));
    s.operation_name.clear();
    let v = Validator::new(ValidationConfig {
        max_span_size: 100,
        ..ValidationConfig::default()
    });
    let counters = ValidationCounters::default();
    let mut spans = vec![s];
    v.apply(&mut spans, &counters);
    assert!(spans.is_empty());
    assert_eq!(counters.oversize.get(), 1);
    assert_eq!(counters.invalid(Invalid::OperationName).get(), 1);
}

#[test]
fn extra_tags_are_added_when_absent() {
    let v = Validator::new(ValidationConfig {
        extra_tags: [
            ("status".to_string(), "ignored".to_string()),
            ("source".to_string(), "kinesis".to_string()),
        ]
        .into_iter()
        .collect(),
        ..ValidationConfig::default()
    });
    let mut s = span(1);
    assert_eq!(v.check(&mut s).invalid, None);
    let mut want = span(1).tags;
    want.push(Tag::string("source", "kinesis"));
    assert_eq!(s.tags, want);
    // Not added to a dropped span.
    let mut bad = span(2);
    bad.duration = -1;
    v.check(&mut bad);
    assert_eq!(bad.tags, span(2).tags);
}

#[test]
fn validation_config_parses_with_defaults() {
    let c: ValidationConfig = serde_yaml_ng::from_str(
        "max_span_size: 1000\noversize_action: log\nextra_tags: {env: prod}\n",
    )
    .unwrap();
    assert_eq!(c.max_span_size, 1000);
    assert_eq!(c.oversize_action, OversizeAction::Log);
    assert_eq!(c.truncation_tag_key, "sluice.tags_truncated");
    assert_eq!(c.extra_tags.get("env").map(String::as_str), Some("prod"));
    assert!(serde_yaml_ng::from_str::<ValidationConfig>("bogus: 1").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_local_round_trips_aggregated_and_plain_records() {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::ShardIteratorType;

    let server = super::local_server::LocalKinesis::start().await;
    server.create_stream("spans", 2).await;
    let client = server.client();
    let shards = client
        .list_shards()
        .stream_name("spans")
        .send()
        .await
        .expect("ListShards");
    assert_eq!(shards.shards().len(), 2);

    let a = span(1).encode_to_vec();
    let b = span(2).encode_to_vec();
    let aggregated = aggregate([("p", a.as_slice()), ("p", b.as_slice())]);
    let plain = span(3).encode_to_vec();
    let mut shard_of_p = None;
    for data in [aggregated, plain] {
        let put = client
            .put_record()
            .stream_name("spans")
            .partition_key("p")
            .data(Blob::new(data))
            .send()
            .await
            .expect("PutRecord");
        shard_of_p = Some(put.shard_id().to_string());
    }
    let iterator = client
        .get_shard_iterator()
        .stream_name("spans")
        .shard_id(shard_of_p.expect("shard"))
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator
        .expect("iterator");
    let got = client
        .get_records()
        .shard_iterator(iterator)
        .limit(100)
        .send()
        .await
        .expect("GetRecords");
    assert_eq!(got.records().len(), 2);
    let mut spans = Vec::new();
    for record in got.records() {
        deaggregate(record.data().as_ref()).for_each(|data| {
            match decode(Encoding::HaystackProto, data).expect("decode") {
                Decoded::Spans(s) => spans.extend(s),
                Decoded::Otlp(_) => unreachable!(),
            }
        });
    }
    assert_eq!(spans, vec![span(1), span(2), span(3)]);
}
