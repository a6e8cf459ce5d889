//! The server's ed25519 signing key: generation, parsing, signing JSON.
//!
//! The key is stored as a PKCS#8 document plus its key ID (`ed25519:<ver>`);
//! where it is stored is the caller's business. Signing goes through ruma's
//! canonical JSON and `sign_json`, never a hand-written canonicaliser.
//! Spec: <https://spec.matrix.org/v1.16/appendices/#signing-json>.

use ruma::{
    CanonicalJsonObject, OwnedServerName, OwnedServerSigningKeyId, ServerName, ServerSigningKeyVersion,
    api::federation::authentication::{XMatrix, XMatrixSigningInput},
    room_version_rules::RedactionRules,
    serde::Base64,
    signatures::{Ed25519KeyPair, hash_and_sign_event, sign_json},
};

/// Why a stored signing key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("signing key file is malformed: {0}")]
    Malformed(String),
    #[error("could not sign JSON: {0}")]
    Sign(String),
}

/// The server's signing key pair together with its key ID.
pub struct ServerSigningKey {
    server_name: OwnedServerName,
    key_id: OwnedServerSigningKeyId,
    pair: Ed25519KeyPair,
}

impl ServerSigningKey {
    /// Generates a fresh key. Returns it with its serialised form, which
    /// [`ServerSigningKey::parse`] reads back.
    pub fn generate(server_name: OwnedServerName) -> Result<(Self, String), SigningKeyError> {
        let document = Ed25519KeyPair::generate();
        // The version is derived from the public key, so it is distinct per key
        // (and a rotated key never reuses an old ID) without needing randomness.
        let probe = Ed25519KeyPair::from_der(&document, String::new())
            .map_err(|e| SigningKeyError::Malformed(e.to_string()))?;
        let version: String = Base64::<ruma::serde::base64::UrlSafe, _>::new(probe.public_key())
            .encode()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(6)
            .collect();
        let version = format!("a_{version}");
        let serialised = format!(
            "ed25519 {version} {}",
            Base64::<ruma::serde::base64::Standard, _>::new(document.to_vec()).encode()
        );
        Ok((Self::parse(server_name, &serialised)?, serialised))
    }

    /// Reads a key from the form [`ServerSigningKey::generate`] wrote: the
    /// same `ed25519 <version> <base64 pkcs8>` line Synapse uses.
    pub fn parse(server_name: OwnedServerName, text: &str) -> Result<Self, SigningKeyError> {
        let mut parts = text.split_whitespace();
        let (Some("ed25519"), Some(version), Some(key), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SigningKeyError::Malformed("expected `ed25519 <version> <key>`".into()));
        };
        let document = Base64::<ruma::serde::base64::Standard, Vec<u8>>::parse(key)
            .map_err(|e| SigningKeyError::Malformed(e.to_string()))?;
        let pair = Ed25519KeyPair::from_der(document.as_bytes(), version.to_owned())
            .map_err(|e| SigningKeyError::Malformed(e.to_string()))?;
        let key_version = <&ServerSigningKeyVersion>::try_from(version)
            .map_err(|e| SigningKeyError::Malformed(e.to_string()))?;
        let key_id = ruma::ServerSigningKeyId::from_parts(ruma::SigningKeyAlgorithm::Ed25519, key_version);
        Ok(Self { server_name, key_id, pair })
    }

    pub fn key_id(&self) -> &OwnedServerSigningKeyId {
        &self.key_id
    }

    pub fn server_name(&self) -> &OwnedServerName {
        &self.server_name
    }

    /// The public half, unpadded base64 as the key server publishes it.
    pub fn public_key(&self) -> Base64 {
        Base64::new(self.pair.public_key().to_vec())
    }

    /// Adds the content hash and this server's signature to an event.
    pub fn hash_and_sign_event(
        &self,
        object: &mut CanonicalJsonObject,
        rules: &RedactionRules,
    ) -> Result<(), crate::EventError> {
        hash_and_sign_event(self.server_name.as_str(), &self.pair, object, rules).map_err(|e| match e {
            ruma::signatures::JsonError::PduTooLarge => crate::EventError::TooLarge("event"),
            other => crate::EventError::Invalid(format!("cannot hash and sign: {other}")),
        })
    }

    /// The `X-Matrix` authorization of a federation request to
    /// `destination` (spec: "Request Authentication").
    pub fn sign_request<T: AsRef<[u8]>>(
        &self,
        request: &http::Request<T>,
        destination: &ServerName,
    ) -> Result<XMatrix, SigningKeyError> {
        let input = XMatrixSigningInput::new(self.server_name.clone(), destination.to_owned(), &self.pair);
        XMatrix::sign_http_request(request, input).map_err(|e| SigningKeyError::Sign(e.to_string()))
    }

    /// Adds this server's signature to `object` (under `signatures`).
    pub fn sign(&self, object: &mut CanonicalJsonObject) -> Result<(), SigningKeyError> {
        sign_json(self.server_name.as_str(), &self.pair, object)
            .map_err(|e| SigningKeyError::Sign(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::{server_name, signatures::verify_json};
    use std::collections::BTreeMap;

    #[test]
    fn generated_key_round_trips_and_signatures_verify() {
        let name = server_name!("example.org").to_owned();
        let (key, text) = ServerSigningKey::generate(name.clone()).expect("generate");
        let reparsed = ServerSigningKey::parse(name, &text).expect("parse");
        assert_eq!(key.key_id(), reparsed.key_id());
        assert_eq!(key.public_key().encode(), reparsed.public_key().encode());

        let mut object: CanonicalJsonObject =
            serde_json::from_str(r#"{"hello":"world","n":1}"#).expect("json");
        reparsed.sign(&mut object).expect("sign");

        let public_keys = BTreeMap::from([(
            "example.org".to_owned(),
            BTreeMap::from([(key.key_id().to_string(), key.public_key())]),
        )]);
        verify_json(&public_keys, &object).expect("signature verifies with the public key");
    }

    /// The key of the spec's signing examples (appendices, "Signing JSON"
    /// and "Signing Events"): seed `YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1`,
    /// as a PKCS#8 document.
    fn spec_example_key() -> ServerSigningKey {
        let seed = Base64::<ruma::serde::base64::Standard, Vec<u8>>::parse(
            "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1",
        )
        .expect("spec seed");
        // The fixed PKCS#8 v1 prefix of an ed25519 private key, then the seed.
        let mut der = hex_bytes("302e020100300506032b657004220420");
        der.extend_from_slice(seed.as_bytes());
        let text = format!("ed25519 1 {}", Base64::<ruma::serde::base64::Standard, _>::new(der).encode());
        ServerSigningKey::parse(server_name!("domain").to_owned(), &text).expect("spec key")
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
    }

    #[test]
    fn signing_json_matches_the_spec_example() {
        let key = spec_example_key();
        let mut object = CanonicalJsonObject::new();
        key.sign(&mut object).expect("sign");
        let expected: CanonicalJsonObject = serde_json::from_str(
            r#"{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}"#,
        )
        .expect("spec output");
        assert_eq!(object, expected);
    }

    #[test]
    fn signing_an_event_matches_the_spec_example() {
        let key = spec_example_key();
        let mut event: CanonicalJsonObject = serde_json::from_str(
            r#"{"room_id":"!x:domain","sender":"@a:domain","origin":"domain","origin_server_ts":1000000,
                "signatures":{},"hashes":{},"type":"X","content":{},"prev_events":[],"auth_events":[],
                "depth":3,"unsigned":{"age_ts":1000000}}"#,
        )
        .expect("spec event");
        let rules = ruma::RoomVersionId::V1.rules().expect("v1 rules");
        key.hash_and_sign_event(&mut event, &rules.redaction).expect("sign");
        let expected: serde_json::Value = serde_json::json!({
            "sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
        });
        assert_eq!(serde_json::to_value(&event["hashes"]).expect("json"), expected);
        let signature = serde_json::to_value(&event["signatures"]).expect("json");
        assert_eq!(
            signature["domain"]["ed25519:1"],
            "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        );
    }

    #[test]
    fn malformed_key_text_is_rejected() {
        let name = server_name!("example.org").to_owned();
        for text in ["", "ed25519 a", "rsa a AAAA", "ed25519 a !!!notbase64", "ed25519 a AAAA extra"] {
            assert!(ServerSigningKey::parse(name.clone(), text).is_err(), "{text:?} accepted");
        }
    }
}
