//! The xinyong contracts, generated from `proto/xinyong` at build time.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every xinyong proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xinyong_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("xinyong.common.v1");
    }
}
pub mod events {
    pub mod v1 {
        tonic::include_proto!("xinyong.events.v1");

        impl GradesChanged {
            /// The entries as separate `GradeChanged` events would carry them: each reason with
            /// its text from `reason_texts` (empty when the event does not give it).
            pub fn into_grades_with_texts(self) -> Vec<GradeChanged> {
                let GradesChanged { mut grades, reason_texts } = self;
                for grade in &mut grades {
                    let GradeChanged { scheme, rule_set_version, reasons, .. } = grade;
                    for reason in reasons {
                        if let Some(found) =
                            reason_texts.iter().find(|text| text.is_for(scheme, *rule_set_version, &reason.code))
                        {
                            reason.text.clone_from(&found.text);
                        }
                    }
                }
                grades
            }
        }

        impl ReasonText {
            /// Whether this is the text of reason `code` under `scheme`'s rule set `rule_set_version`.
            pub fn is_for(&self, scheme: &str, rule_set_version: i32, code: &str) -> bool {
                self.code == code && self.rule_set_version == rule_set_version && self.scheme == scheme
            }
        }
    }
}
pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("xinyong.gateway.v1");
    }
}
pub mod registry {
    pub mod v1 {
        tonic::include_proto!("xinyong.registry.v1");
    }
}
pub mod ingestion {
    pub mod v1 {
        tonic::include_proto!("xinyong.ingestion.v1");
    }
}
pub mod grading {
    pub mod v1 {
        tonic::include_proto!("xinyong.grading.v1");
    }
}
pub mod sanctions {
    pub mod v1 {
        tonic::include_proto!("xinyong.sanctions.v1");
    }
}
pub mod lottery {
    pub mod v1 {
        tonic::include_proto!("xinyong.lottery.v1");
    }
}
pub mod objections {
    pub mod v1 {
        tonic::include_proto!("xinyong.objections.v1");
    }
}
pub mod reports {
    pub mod v1 {
        tonic::include_proto!("xinyong.reports.v1");
    }
}
