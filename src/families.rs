//! The component families this binary can be built with: for each, the
//! cargo feature that compiles it in, its registration function (when it is
//! compiled in) and the component types it provides. This table is the one
//! place that names families; the core names none.
//!
//! Types of a family left out of the build are still recorded in the
//! registry as "not compiled", so `sluice validate` tells a user which
//! feature builds the type a config names. A unit test checks, with every
//! feature on, that each family registers exactly the types listed here.

use sluice_core::{Kind, Registry};

/// One family: a crate, chosen with one cargo feature of this binary.
pub struct Family {
    /// The cargo feature of the `sluice` binary that compiles it in.
    pub feature: &'static str,
    /// Its registration, when compiled in.
    pub register: Option<fn(&mut Registry)>,
    /// Every component type it provides.
    pub types: &'static [(Kind, &'static str)],
}

use Kind::{Exporter, Extension, Processor, Receiver};

/// `Some(f)` when the feature is on, `None` otherwise.
macro_rules! family {
    ($feature:literal, $krate:ident, $types:expr) => {
        Family {
            feature: $feature,
            #[cfg(feature = $feature)]
            register: Some($krate::register),
            #[cfg(not(feature = $feature))]
            register: None,
            types: $types,
        }
    };
}

pub const FAMILIES: &[Family] = &[
    family!(
        "otlp",
        sluice_otlp,
        &[
            (Receiver, "otlp"),
            (Exporter, "otlp"),
            (Exporter, "otlphttp")
        ]
    ),
    family!(
        "kafka",
        sluice_kafka,
        &[(Receiver, "kafka"), (Exporter, "kafka")]
    ),
    family!("kinesis", sluice_kinesis, &[(Receiver, "kinesis")]),
    family!(
        "haystack",
        sluice_haystack,
        &[(Receiver, "haystack_http"), (Receiver, "haystack_grpc")]
    ),
    family!("filelog", sluice_filelog, &[(Receiver, "filelog")]),
    family!(
        "processors",
        sluice_processors,
        &[
            (Processor, "attributes"),
            (Processor, "batch"),
            (Processor, "memory_limiter"),
        ]
    ),
    family!(
        "basics",
        sluice_basics,
        &[
            (Exporter, "debug"),
            (Exporter, "file"),
            (Extension, "file_storage"),
            (Extension, "health_check"),
        ]
    ),
];

/// Every component compiled into this binary, and every other known type
/// marked with the feature that would build it.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    for family in FAMILIES {
        match family.register {
            Some(register) => register(&mut r),
            None => {
                for (kind, type_name) in family.types {
                    r.not_compiled(*kind, type_name, family.feature);
                }
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every feature on (the default build, which the test suite
    /// uses), each family registers exactly the types the table lists, so
    /// the "build with feature X" hints cannot go stale.
    #[test]
    fn each_family_registers_exactly_its_listed_types() {
        for family in FAMILIES {
            let register = family
                .register
                .unwrap_or_else(|| panic!("tests run with feature `{}` on", family.feature));
            let mut r = Registry::new();
            register(&mut r);
            let mut got: Vec<(Kind, &str)> =
                r.list().iter().map(|c| (c.kind, c.type_name)).collect();
            let mut want = family.types.to_vec();
            got.sort();
            want.sort();
            assert_eq!(got, want, "family `{}`", family.feature);
        }
    }

    #[test]
    fn no_type_is_listed_by_two_families() {
        let mut all: Vec<(Kind, &str)> = FAMILIES.iter().flat_map(|f| f.types.to_vec()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
