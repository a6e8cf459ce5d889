//! Room versions this server speaks, and which is the default for new rooms.
//!
//! Spec: <https://spec.matrix.org/v1.16/rooms/>. `/capabilities` reports this
//! table verbatim (`m.room_versions`), so it must only list versions whose
//! rules the server actually enforces.

use ruma::RoomVersionId;

/// Whether the spec calls a room version stable or unstable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stability {
    Stable,
    Unstable,
}

/// Every room version the server can create and join, with its stability.
pub fn supported() -> [(RoomVersionId, Stability); 12] {
    use RoomVersionId::*;
    [V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12].map(|v| (v, Stability::Stable))
}

/// The version new rooms get unless the creator or the operator asks for
/// another. Room version 12 is the one the spec recommends since v1.16.
pub fn default_version() -> RoomVersionId {
    RoomVersionId::V12
}

/// Whether `version` is one this server supports.
pub fn is_supported(version: &RoomVersionId) -> bool {
    supported().iter().any(|(v, _)| v == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_supported_and_stable() {
        let default = default_version();
        assert!(is_supported(&default));
        let stability = supported().into_iter().find(|(v, _)| *v == default).map(|(_, s)| s);
        assert_eq!(stability, Some(Stability::Stable));
    }

    #[test]
    fn unknown_versions_are_not_supported() {
        let custom: RoomVersionId = "org.example.custom".try_into().expect("valid version string");
        assert!(!is_supported(&custom));
    }
}
