//! Where the server's signing key lives: `<data_dir>/signing.key`, in the
//! same one-line format Synapse uses, readable only by its owner. Generated
//! on first start.

use std::{io::Write, path::Path};

use ruma::OwnedServerName;
use tessera_core::ServerSigningKey;

use crate::ServeError;

pub(crate) fn load_or_generate(
    data_dir: &Path,
    server_name: OwnedServerName,
) -> Result<ServerSigningKey, ServeError> {
    let path = data_dir.join("signing.key");
    let error = |e: &dyn std::fmt::Display| ServeError::SigningKey(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => ServerSigningKey::parse(server_name, &text).map_err(|e| error(&e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|e| error(&e))?;
            let (key, text) = ServerSigningKey::generate(server_name).map_err(|e| error(&e))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(|e| error(&e))?;
            file.write_all(format!("{text}\n").as_bytes()).map_err(|e| error(&e))?;
            file.sync_all().map_err(|e| error(&e))?;
            tracing::info!(key_id = %key.key_id(), path = %path.display(), "generated a new signing key");
            Ok(key)
        }
        Err(e) => Err(error(&e)),
    }
}
