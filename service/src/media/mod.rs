//! The content repository (spec: "Content repository"): uploads, reserved
//! IDs for asynchronous uploads, downloads (of local media, and of other
//! servers' media, fetched once and cached), thumbnails and URL previews.
//!
//! Bytes stream through: an upload is written to a staging file as it
//! arrives (`staging`), hashed, then handed to the [`BlobStore`] under its
//! hash, so a file uploaded twice is stored once; a download is a reader
//! of the blob. Rows in the database (`tessera_storage::MediaRow`) say
//! which media ID names which blob.
//!
//! Must not: know about HTTP (headers and multipart are the API crates').

pub mod blobs;
pub mod maintenance;
mod preview;
mod preview_html;
mod staging;
pub mod thumbnail;

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use ruma::{OwnedMxcUri, OwnedServerName, ServerName, UserId};
use tessera_storage::{MediaContent, MediaRow, NewMedia, Store, ThumbnailRow};
use tokio::io::AsyncReadExt;

use crate::{
    Error, Result,
    federation::{Remote, RemoteError},
    now_ms,
};
pub use blobs::{BlobReader, BlobStore, LocalBlobs};
pub use preview::PreviewFetcher;
use thumbnail::{Method, RenderError};

/// What the content repository allows.
#[derive(Clone, Debug)]
pub struct MediaSettings {
    /// Largest file accepted, uploaded or fetched from another server.
    pub max_upload_bytes: u64,
    /// Bytes a user may have uploaded in all; 0: no quota.
    pub max_bytes_per_user: u64,
    /// Reserved IDs (`/create`) a user may have waiting at once.
    pub max_pending_uploads: i64,
    /// How long a reserved ID waits for its bytes.
    pub unused_expiry: Duration,
    /// The unauthenticated `/_matrix/media/v3/download|thumbnail` serve
    /// only media whose bytes arrived before this (ms since the epoch);
    /// 0 freezes them for all media (spec: "Client behaviour").
    pub unauthenticated_until_ts: i64,
    /// Pictures with more pixels are not thumbnailed.
    pub max_thumbnail_pixels: u64,
    /// Longest wait a download may ask for media still being uploaded.
    pub max_download_wait: Duration,
    /// Whether `/preview_url` is served.
    pub url_previews: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            max_bytes_per_user: 0,
            max_pending_uploads: 10,
            unused_expiry: Duration::from_secs(24 * 3600),
            unauthenticated_until_ts: 0,
            max_thumbnail_pixels: 32_000_000,
            max_download_wait: Duration::from_secs(60),
            url_previews: false,
        }
    }
}

/// Which API a download comes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `/_matrix/client/v1/media`: with a token.
    Authenticated,
    /// The deprecated `/_matrix/media/v3` downloads: only media older than
    /// the freeze; other servers' media only when `allow_remote`.
    Unauthenticated { allow_remote: bool },
    /// Another server's `/_matrix/federation/v1/media`: local media only.
    Federation,
}

/// Something to serve: a file's bytes and what to say about them.
#[derive(Clone, Debug)]
pub struct Download {
    pub content_type: Option<String>,
    pub file_name: Option<String>,
    pub content: MediaContent,
    /// Whether this is a thumbnail (always served inline).
    pub thumbnail: bool,
}

/// The content repository. Cheap to clone.
#[derive(Clone)]
pub struct Media {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    blobs: Arc<dyn BlobStore>,
    remote: Arc<dyn Remote>,
    previews: PreviewFetcher,
    server_name: ruma::OwnedServerName,
    settings: MediaSettings,
    /// Bumped each time a reserved ID gets its bytes; downloads waiting
    /// for one watch it.
    arrivals: tokio::sync::watch::Sender<u64>,
    /// Thumbnails made at once (each decodes a picture on a blocking thread).
    rendering: tokio::sync::Semaphore,
    /// Other servers' files being fetched, one lock each.
    fetching: std::sync::Mutex<HashMap<(OwnedServerName, String), InFlight>>,
    /// Other servers' files fetched at once.
    remote_fetches: tokio::sync::Semaphore,
}

/// A fetch of another server's file, held by those who wait for it.
type InFlight = Arc<tokio::sync::Mutex<()>>;

/// Other servers' files fetched at once, at most.
const REMOTE_FETCHES: usize = 8;

/// What a client said of an upload besides its bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Upload<'a> {
    pub content_type: Option<&'a str>,
    pub file_name: Option<&'a str>,
    /// Its `Content-Length`, if it gave one (refused at once when too large).
    pub declared_len: Option<u64>,
}

/// A thumbnail request.
#[derive(Clone, Copy, Debug)]
pub struct ThumbnailSpec {
    pub width: u32,
    pub height: u32,
    pub method: Method,
    pub animated: bool,
}

impl Media {
    pub fn new(
        store: Store,
        blobs: Arc<dyn BlobStore>,
        remote: Arc<dyn Remote>,
        server_name: ruma::OwnedServerName,
        settings: MediaSettings,
    ) -> Self {
        let (arrivals, _) = tokio::sync::watch::channel(0);
        let rendering =
            tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()));
        let previews = PreviewFetcher::new(remote.clone());
        Self {
            inner: Arc::new(Inner {
                store,
                blobs,
                remote,
                previews,
                server_name,
                settings,
                arrivals,
                rendering,
                fetching: std::sync::Mutex::new(HashMap::new()),
                remote_fetches: tokio::sync::Semaphore::new(REMOTE_FETCHES),
            }),
        }
    }

    /// This server's name: the authority of its `mxc://` URIs.
    pub fn server_name(&self) -> &ServerName {
        &self.inner.server_name
    }

    /// The largest upload accepted, for `/config`.
    pub fn max_upload_bytes(&self) -> u64 {
        self.inner.settings.max_upload_bytes
    }

    /// Stores an upload and names it with a new media ID.
    pub async fn upload(
        &self,
        uploader: &UserId,
        upload: Upload<'_>,
        body: impl Stream<Item = Result<Bytes>>,
    ) -> Result<OwnedMxcUri> {
        let Upload { content_type, file_name, declared_len } = upload;
        let content = self.take_upload(uploader, declared_len, body).await?;
        let media_id = new_media_id();
        let media = NewMedia {
            server_name: self.inner.server_name.as_str(),
            media_id: &media_id,
            uploader: Some(uploader.as_str()),
            content_type,
            file_name,
            content,
        };
        self.inner.store.insert_media(&media).await?;
        Ok(self.mxc(&media_id))
    }

    /// Reserves a media ID for an upload to come (`POST /media/v1/create`);
    /// returns it and until when it waits.
    pub async fn create(&self, uploader: &UserId) -> Result<(OwnedMxcUri, i64)> {
        let usage = self.inner.store.media_usage(uploader.as_str()).await?;
        if usage.pending >= self.inner.settings.max_pending_uploads {
            return Err(Error::limit_exceeded(Duration::from_secs(60)));
        }
        let media_id = new_media_id();
        let expires = now_ms().saturating_add(duration_ms(self.inner.settings.unused_expiry));
        self.inner
            .store
            .reserve_media(self.inner.server_name.as_str(), &media_id, uploader.as_str(), expires)
            .await?;
        Ok((self.mxc(&media_id), expires))
    }

    /// Gives a reserved ID its bytes (`PUT /media/v3/upload/{server}/{id}`).
    pub async fn upload_reserved(
        &self,
        uploader: &UserId,
        server_name: &ServerName,
        media_id: &str,
        upload: Upload<'_>,
        body: impl Stream<Item = Result<Bytes>>,
    ) -> Result<()> {
        let Upload { content_type, file_name, declared_len } = upload;
        let unknown = || Error::not_found("Unknown media ID");
        if server_name != self.inner.server_name || !valid_media_id(media_id) {
            return Err(unknown());
        }
        let row = self.inner.store.get_media(server_name.as_str(), media_id).await?.ok_or_else(unknown)?;
        if row.uploader.as_deref() != Some(uploader.as_str()) {
            return Err(Error::forbidden("This media ID was created by another user"));
        }
        if row.content.is_some() {
            return Err(cannot_overwrite());
        }
        if row.unused_expires_ts.is_some_and(|expires| expires <= now_ms()) {
            return Err(unknown());
        }
        let content = self.take_upload(uploader, declared_len, body).await?;
        let filled = self
            .inner
            .store
            .fill_reserved_media(server_name.as_str(), media_id, content_type, file_name, &content)
            .await?;
        if !filled {
            // Another upload won the race, or the reservation just expired.
            return Err(match self.inner.store.get_media(server_name.as_str(), media_id).await? {
                Some(row) if row.content.is_some() => cannot_overwrite(),
                _ => unknown(),
            });
        }
        self.inner.arrivals.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Checks the limits, stages the body and stores its bytes.
    async fn take_upload(
        &self,
        uploader: &UserId,
        declared_len: Option<u64>,
        body: impl Stream<Item = Result<Bytes>>,
    ) -> Result<MediaContent> {
        let settings = &self.inner.settings;
        if declared_len.is_some_and(|len| len > settings.max_upload_bytes) {
            return Err(staging::too_large(settings.max_upload_bytes));
        }
        let quota_left = match settings.max_bytes_per_user {
            0 => None,
            quota => {
                let used = self.inner.store.media_usage(uploader.as_str()).await?.bytes;
                Some(quota.saturating_sub(u64::try_from(used).unwrap_or(0)))
            }
        };
        let over_quota = || Error::forbidden("You have used all the space this server gives you for files");
        if let (Some(left), Some(len)) = (quota_left, declared_len)
            && len > left
        {
            return Err(over_quota());
        }
        let staged = staging::stage(self.inner.blobs.staging_dir(), body, settings.max_upload_bytes).await?;
        if quota_left.is_some_and(|left| staged.size > left) {
            return Err(over_quota());
        }
        self.keep(staged).await
    }

    /// Hands a staged file to the blob store.
    async fn keep(&self, staged: staging::Staged) -> Result<MediaContent> {
        let content =
            MediaContent { hash: staged.hash.clone(), size: i64::try_from(staged.size).unwrap_or(i64::MAX) };
        let path = staged.into_path();
        self.inner.blobs.put(&content.hash, &path).await.map_err(Error::internal)?;
        Ok(content)
    }

    /// Stores bytes already in memory (fetched media, thumbnails).
    async fn keep_bytes(&self, bytes: Vec<u8>) -> Result<MediaContent> {
        let limit = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let body = futures_util::stream::iter([Ok(Bytes::from(bytes))]);
        let staged = staging::stage(self.inner.blobs.staging_dir(), body, limit).await?;
        self.keep(staged).await
    }

    /// The file behind a media ID, waiting up to `wait` for one still
    /// being uploaded, fetching (and caching) another server's.
    pub async fn download(
        &self,
        server_name: &ServerName,
        media_id: &str,
        wait: Duration,
        access: Access,
    ) -> Result<Download> {
        let row = self.media_row(server_name, media_id, wait, access).await?;
        let content = row.content.ok_or_else(not_yet_uploaded)?;
        Ok(Download { content_type: row.content_type, file_name: row.file_name, content, thumbnail: false })
    }

    async fn media_row(
        &self,
        server_name: &ServerName,
        media_id: &str,
        wait: Duration,
        access: Access,
    ) -> Result<MediaRow> {
        if !valid_media_id(media_id) || !plausible_server(server_name) {
            return Err(media_not_found());
        }
        let local = server_name == self.inner.server_name;
        if !local && matches!(access, Access::Federation | Access::Unauthenticated { allow_remote: false }) {
            return Err(media_not_found());
        }
        let wait = wait.min(self.inner.settings.max_download_wait);
        // Fetched now, remote media would arrive after the freeze: the
        // unauthenticated API may only serve what is cached already.
        let fetch = !matches!(access, Access::Unauthenticated { .. })
            || now_ms() < self.inner.settings.unauthenticated_until_ts;
        let row = match local {
            true => self.local_row(media_id, wait).await?,
            false => self.remote_row(server_name, media_id, wait, fetch).await?,
        };
        if matches!(access, Access::Unauthenticated { .. })
            && row.created_ts >= self.inner.settings.unauthenticated_until_ts
        {
            // The freeze: such media is only served with a token.
            return Err(media_not_found());
        }
        Ok(row)
    }

    /// A local media ID's row once it has its bytes.
    async fn local_row(&self, media_id: &str, wait: Duration) -> Result<MediaRow> {
        let deadline = tokio::time::Instant::now() + wait;
        // Watch first, then read: an upload finishing in between still wakes us.
        let mut arrivals = self.inner.arrivals.subscribe();
        loop {
            let row = self
                .inner
                .store
                .get_media(self.inner.server_name.as_str(), media_id)
                .await?
                .ok_or_else(media_not_found)?;
            if row.content.is_some() {
                return Ok(row);
            }
            if row.unused_expires_ts.is_some_and(|expires| expires <= now_ms()) {
                return Err(media_not_found());
            }
            match tokio::time::timeout_at(deadline, arrivals.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(not_yet_uploaded()),
            }
        }
    }

    /// Another server's media: from the cache, else fetched and cached.
    async fn remote_row(
        &self,
        server_name: &ServerName,
        media_id: &str,
        wait: Duration,
        fetch: bool,
    ) -> Result<MediaRow> {
        let store = &self.inner.store;
        if let Some(row) = store.get_media(server_name.as_str(), media_id).await? {
            store.touch_remote_media(&row).await?;
            return Ok(row);
        }
        if !fetch {
            return Err(media_not_found());
        }
        // One fetch per file however many ask at once, and a few at a time
        // in all: each holds a connection and writes a file.
        let key = (server_name.to_owned(), media_id.to_owned());
        let flight = {
            let mut flights = self.inner.fetching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            flights.entry(key.clone()).or_default().clone()
        };
        let fetched = async {
            let _same_file = flight.lock().await;
            if let Some(row) = store.get_media(server_name.as_str(), media_id).await? {
                return Ok(row);
            }
            let _permit = self.inner.remote_fetches.acquire().await.map_err(Error::internal)?;
            self.fetch_remote(server_name, media_id, wait).await
        }
        .await;
        let mut flights = self.inner.fetching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if flights.get(&key).is_some_and(|held| Arc::strong_count(held) <= 2) {
            flights.remove(&key);
        }
        fetched
    }

    /// Fetches another server's file and caches it.
    async fn fetch_remote(
        &self,
        server_name: &ServerName,
        media_id: &str,
        wait: Duration,
    ) -> Result<MediaRow> {
        let store = &self.inner.store;
        let max = self.inner.settings.max_upload_bytes;
        let fetched = self
            .inner
            .remote
            .download_media(server_name, media_id, usize::try_from(max).unwrap_or(usize::MAX), wait)
            .await
            .map_err(remote_media_error)?;
        // Written to disk as it arrives, never held whole.
        let body = fetched.body.map(|chunk| chunk.map_err(remote_media_error));
        let staged = match staging::stage(self.inner.blobs.staging_dir(), body, max).await {
            Err(Error::Matrix { status: 413, .. }) => return Err(remote_too_large()),
            other => other?,
        };
        let content = self.keep(staged).await?;
        let media = NewMedia {
            server_name: server_name.as_str(),
            media_id,
            uploader: None,
            content_type: fetched.content_type.as_deref(),
            file_name: fetched.file_name.as_deref(),
            content,
        };
        store.insert_media(&media).await?;
        store.get_media(server_name.as_str(), media_id).await?.ok_or_else(media_not_found)
    }

    /// A thumbnail of the media, made once and kept; the original itself
    /// when it is no larger than asked.
    pub async fn thumbnail(
        &self,
        server_name: &ServerName,
        media_id: &str,
        spec: ThumbnailSpec,
        wait: Duration,
        access: Access,
    ) -> Result<Download> {
        let original = self.download(server_name, media_id, wait, access).await?;
        let Some(target) = thumbnail::target_for(spec.width, spec.height, spec.method, spec.animated) else {
            return self.original_as_thumbnail(original);
        };
        let store = &self.inner.store;
        let (width, height) = (i64::from(target.width), i64::from(target.height));
        let method = target.method.as_str();
        if let Some(made) = store
            .get_thumbnail(server_name.as_str(), media_id, width, height, method, target.animated)
            .await?
        {
            return Ok(thumbnail_download(made));
        }
        let local = server_name == self.inner.server_name;
        let too_large = || match local {
            true => Error::too_large("Content is too large to thumbnail"),
            false => {
                Error::new(502, ruma::api::error::ErrorKind::TooLarge, "Content is too large to thumbnail")
            }
        };
        let max_pixels = self.inner.settings.max_thumbnail_pixels;
        // Its first bytes tell whether it is a picture, and often its size:
        // neither a large non-picture nor a huge picture is read whole.
        let prefix = self.read_prefix(&original.content, 64 * 1024).await?;
        match thumbnail::probe(&prefix, max_pixels) {
            Err(RenderError::TooLarge) => return Err(too_large()),
            Err(_) => return Err(cannot_thumbnail()),
            Ok(()) => {}
        }
        let _permit = self.inner.rendering.acquire().await.map_err(Error::internal)?;
        let source = self.read_all(&original.content).await?;
        let rendered = tokio::task::spawn_blocking(move || thumbnail::render(&source, target, max_pixels))
            .await
            .map_err(Error::internal)?;
        let rendered = match rendered {
            Ok(rendered) => rendered,
            Err(RenderError::UseOriginal) => return self.original_as_thumbnail(original),
            Err(RenderError::TooLarge) => return Err(too_large()),
            Err(RenderError::Unsupported) => return Err(cannot_thumbnail()),
        };
        let made = ThumbnailRow {
            width,
            height,
            method: method.to_owned(),
            animated: target.animated,
            content_type: rendered.content_type.to_owned(),
            content: self.keep_bytes(rendered.bytes).await?,
        };
        store.insert_thumbnail(server_name.as_str(), media_id, &made).await?;
        // Another request may have made it first: serve what is stored.
        Ok(
            match store
                .get_thumbnail(server_name.as_str(), media_id, width, height, method, target.animated)
                .await?
            {
                Some(stored) => thumbnail_download(stored),
                None => thumbnail_download(made),
            },
        )
    }

    /// The original, served where a thumbnail was asked for: only
    /// pictures of the formats thumbnails come in.
    fn original_as_thumbnail(&self, original: Download) -> Result<Download> {
        let picture = original.content_type.as_deref().is_some_and(|content_type| {
            let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            matches!(essence.as_str(), "image/png" | "image/jpeg" | "image/gif" | "image/webp")
        });
        match picture {
            true => Ok(Download { thumbnail: true, file_name: None, ..original }),
            false => Err(cannot_thumbnail()),
        }
    }

    /// A reader of the file's bytes from `start`, `len` of them (all when
    /// `None`).
    pub async fn read(&self, content: &MediaContent, start: u64, len: Option<u64>) -> Result<BlobReader> {
        self.inner
            .blobs
            .read(&content.hash, start, len)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| Error::internal(format!("blob {} is missing", content.hash)))
    }

    async fn read_prefix(&self, content: &MediaContent, len: u64) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.read(content, 0, Some(len)).await?.read_to_end(&mut bytes).await.map_err(Error::internal)?;
        Ok(bytes)
    }

    async fn read_all(&self, content: &MediaContent) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(usize::try_from(content.size).unwrap_or(0));
        self.read(content, 0, None).await?.read_to_end(&mut bytes).await.map_err(Error::internal)?;
        Ok(bytes)
    }

    /// `GET /preview_url`: the page's Open Graph data, its image stored
    /// as local media.
    pub async fn preview_url(
        &self,
        user: &UserId,
        url: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        if !self.inner.settings.url_previews {
            return Err(Error::forbidden("URL previews are disabled on this server"));
        }
        if let Some(answer) = self.inner.previews.remembered(url) {
            return Ok(answer);
        }
        let page = self.inner.previews.fetch_page(url, self.inner.settings.max_upload_bytes).await?;
        let mut og = page.open_graph;
        if let Some(image) = page.image {
            let content_type = image.content_type.clone();
            let size = image.bytes.len();
            let dimensions = image::ImageReader::new(std::io::Cursor::new(&image.bytes))
                .with_guessed_format()
                .ok()
                .and_then(|reader| reader.into_dimensions().ok());
            let content = self.keep_bytes(image.bytes).await?;
            let media_id = new_media_id();
            let media = NewMedia {
                server_name: self.inner.server_name.as_str(),
                media_id: &media_id,
                uploader: Some(user.as_str()),
                content_type: content_type.as_deref(),
                file_name: None,
                content,
            };
            self.inner.store.insert_media(&media).await?;
            og.insert("og:image".into(), self.mxc(&media_id).to_string().into());
            og.insert("matrix:image:size".into(), size.into());
            if let Some(content_type) = content_type {
                og.insert("og:image:type".into(), content_type.into());
            }
            if let Some((width, height)) = dimensions {
                og.insert("og:image:width".into(), width.into());
                og.insert("og:image:height".into(), height.into());
            }
        } else {
            og.remove("og:image");
        }
        self.inner.previews.remember(url, &og);
        Ok(og)
    }

    fn mxc(&self, media_id: &str) -> OwnedMxcUri {
        OwnedMxcUri::from(format!("mxc://{}/{media_id}", self.inner.server_name))
    }
}

/// A new media ID: 24 random letters and digits.
fn new_media_id() -> String {
    use rand::{RngExt, distr::Alphanumeric};
    rand::rng().sample_iter(Alphanumeric).take(24).map(char::from).collect()
}

/// The spec's media ID alphabet (`A-Za-z0-9_-`), which also keeps IDs
/// from naming anything but media.
pub fn valid_media_id(media_id: &str) -> bool {
    !media_id.is_empty()
        && media_id.len() <= 255
        && media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether a server name could name a server at all: ruma accepts names
/// like `..` (empty DNS labels), which no server has.
fn plausible_server(server_name: &ServerName) -> bool {
    let host = server_name.host();
    host.starts_with('[') || host.split('.').all(|label| !label.is_empty())
}

fn thumbnail_download(row: ThumbnailRow) -> Download {
    Download { content_type: Some(row.content_type), file_name: None, content: row.content, thumbnail: true }
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn remote_too_large() -> Error {
    Error::new(502, ruma::api::error::ErrorKind::TooLarge, "Content is too large to serve")
}

fn media_not_found() -> Error {
    Error::not_found("Media not found")
}

fn not_yet_uploaded() -> Error {
    Error::new(504, ruma::api::error::ErrorKind::NotYetUploaded, "Content has not yet been uploaded")
}

fn cannot_overwrite() -> Error {
    Error::new(409, ruma::api::error::ErrorKind::CannotOverwriteMedia, "Media already uploaded")
}

fn cannot_thumbnail() -> Error {
    Error::new(
        400,
        ruma::api::error::ErrorKind::Unknown,
        "Cannot generate thumbnails for the requested content",
    )
}

/// Another server's failure, as a client sees it: not found is not found,
/// too large is 502 `M_TOO_LARGE`, anything else 502.
fn remote_media_error(error: RemoteError) -> Error {
    match &error {
        RemoteError::Status { status: 404, .. } => media_not_found(),
        RemoteError::Status { status: 504, .. } => not_yet_uploaded(),
        RemoteError::TooLarge { .. } => remote_too_large(),
        _ => {
            tracing::info!(%error, "remote media not fetched");
            Error::new(502, ruma::api::error::ErrorKind::Unknown, "The media's server did not provide it")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_the_spec_alphabet_only() {
        assert!(valid_media_id("AQwafuaFswefuhsfAFAgsw"));
        assert!(valid_media_id("a_b-c"));
        for bad in ["", "../etc", "a/b", "mxc:%2F%2Fhs1", "a.b", "é"] {
            assert!(!valid_media_id(bad), "{bad:?}");
        }
        let id = new_media_id();
        assert!(valid_media_id(&id) && id.len() == 24);
        for (name, plausible) in [("example.org", true), ("a:8448", true), ("[::1]:80", true), ("..", false)]
        {
            let name = <&ServerName>::try_from(name).expect("ruma accepts it");
            assert_eq!(plausible_server(name), plausible, "{name}");
        }
    }
}
