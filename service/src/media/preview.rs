//! URL previews: a page fetched (through [`Remote::fetch_url`], which
//! reaches only the addresses the outbound rules allow), its Open Graph
//! data read (`preview_html`), and its picture fetched too. Answers (with
//! the picture already stored as media) are kept for an hour, so a link
//! posted in a busy room is fetched once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Map, Value};

use crate::{
    Error, Result,
    federation::{FetchedFile, Remote, RemoteError},
};

use super::preview_html;

/// How long a preview is reused.
const KEPT_FOR: Duration = Duration::from_secs(3600);
/// Previews kept at most (then the cache starts over).
const KEPT_AT_MOST: usize = 10_000;
/// The most of a page read: Open Graph tags are in its head.
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// A page's preview before its picture is stored.
pub(crate) struct Page {
    pub open_graph: Map<String, Value>,
    pub image: Option<FetchedFile>,
}

/// An answer and when it was given.
type Remembered = (Instant, Map<String, Value>);

/// Fetches pages for previews and remembers the answers.
pub struct PreviewFetcher {
    remote: Arc<dyn Remote>,
    cache: Mutex<HashMap<String, Remembered>>,
}

impl PreviewFetcher {
    pub fn new(remote: Arc<dyn Remote>) -> Self {
        Self { remote, cache: Mutex::new(HashMap::new()) }
    }

    /// The page at `url`: its Open Graph data and picture (at most
    /// `max_image_bytes`). A picture URL is its own picture.
    pub(crate) async fn fetch_page(&self, url: &str, max_image_bytes: u64) -> Result<Page> {
        let parsed = url::Url::parse(url).map_err(|_| Error::invalid_param("url is not a valid URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid_param("Only http and https URLs can be previewed"));
        }
        let max_image_bytes = usize::try_from(max_image_bytes).unwrap_or(usize::MAX);
        let fetched = self.remote.fetch_url(parsed.as_str(), MAX_PAGE_BYTES.min(max_image_bytes)).await;
        let fetched = fetched.map_err(preview_error)?;
        let page = match essence(fetched.content_type.as_deref()).as_str() {
            image if image.starts_with("image/") => Page { open_graph: Map::new(), image: Some(fetched) },
            "text/html" | "application/xhtml+xml" => {
                let html = String::from_utf8_lossy(&fetched.bytes);
                let open_graph = preview_html::open_graph(&html);
                let image = match preview_html::image_url(&open_graph, &parsed) {
                    Some(image_url) => self
                        .remote
                        .fetch_url(image_url.as_str(), max_image_bytes)
                        .await
                        .ok()
                        .filter(|image| essence(image.content_type.as_deref()).starts_with("image/")),
                    None => None,
                };
                Page { open_graph, image }
            }
            _ => Page { open_graph: Map::new(), image: None },
        };
        Ok(page)
    }

    /// The answer given for `url` within the hour, if any.
    pub(crate) fn remembered(&self, url: &str) -> Option<Map<String, Value>> {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(url).filter(|(at, _)| at.elapsed() < KEPT_FOR).map(|(_, answer)| answer.clone())
    }

    pub(crate) fn remember(&self, url: &str, answer: &Map<String, Value>) {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= KEPT_AT_MOST {
            cache.clear();
        }
        cache.insert(url.to_owned(), (Instant::now(), answer.clone()));
    }
}

/// A content type without its parameters, lower-case.
fn essence(content_type: Option<&str>) -> String {
    content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

fn preview_error(error: RemoteError) -> Error {
    tracing::info!(%error, "URL not previewed");
    match error {
        RemoteError::NotAllowed { .. } => Error::forbidden("This URL may not be previewed"),
        RemoteError::TooLarge { .. } => Error::too_large("The page is too large to preview"),
        _ => Error::new(502, ruma::api::error::ErrorKind::Unknown, "The page could not be fetched"),
    }
}
