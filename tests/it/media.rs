//! The content repository: uploads and downloads (with their headers,
//! byte ranges and the freeze of the unauthenticated endpoints), limits
//! and quotas, asynchronous uploads, thumbnails, and media of another
//! server fetched over federation and cached.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, RgbaImage};
use reqwest::Method;

use crate::{
    both_backends,
    federation::two_servers,
    harness::{Backend, RawResponse, TestClient, TestServer, encode_all},
};

both_backends!(
    an_upload_is_downloaded_with_its_type_name_and_safety_headers,
    downloads_serve_byte_ranges,
    the_same_bytes_are_stored_once,
    uploads_past_the_limits_are_refused,
    an_asynchronous_upload_fills_a_reserved_id,
    thumbnails_are_made_once_in_the_asked_shape,
    the_unauthenticated_endpoints_serve_only_media_from_before_the_freeze,
    messages_with_files_are_found_by_the_contains_url_filter,
    url_previews_read_open_graph_and_store_the_picture,
    media_commands_purge_remote_files_and_remove_unused_ones,
    a_100_mb_file_streams_through_without_the_server_holding_it,
    another_servers_media_is_fetched_over_federation_and_cached
);

/// A PNG of this size, in one colour.
fn png(width: u32, height: u32) -> Vec<u8> {
    let image =
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(width, height, image::Rgba([30, 120, 200, 255])));
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).expect("encode PNG");
    bytes
}

fn media_path(mxc: &str) -> String {
    mxc.strip_prefix("mxc://").expect("an mxc URI").to_owned()
}

async fn get(client: &TestClient, path: &str) -> RawResponse {
    client.raw(Method::GET, path, &[], Vec::new()).await
}

async fn an_upload_is_downloaded_with_its_type_name_and_safety_headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let picture = png(40, 30);
    let mxc = alice.upload(&picture, "image/png", Some("cat picture.png")).await;
    assert!(mxc.starts_with("mxc://tessera.test/"), "{mxc}");
    let id = media_path(&mxc);

    // Anyone signed in may download it, as uploaded.
    let download = get(&bob, &format!("/_matrix/client/v1/media/download/{id}")).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.bytes, picture);
    assert_eq!(download.header("content-type"), "image/png");
    assert_eq!(download.header("content-disposition"), "inline; filename=\"cat picture.png\"");
    assert_eq!(download.header("content-length"), picture.len().to_string());
    assert!(download.header("content-security-policy").starts_with("sandbox; default-src 'none'"));
    assert_eq!(download.header("x-content-type-options"), "nosniff");
    assert_eq!(download.header("cross-origin-resource-policy"), "cross-origin");

    // A name given in the path replaces the uploaded one; non-ASCII names
    // are RFC 8187-encoded.
    let renamed = get(&bob, &format!("/_matrix/client/v1/media/download/{id}/{}", encode_all("☕"))).await;
    assert_eq!(renamed.header("content-disposition"), "inline; filename*=utf-8''%E2%98%95");

    // Types outside the spec's safe list (and made-up ones) are kept but
    // served as attachments, so a browser never runs them as a page.
    let page = alice.upload(b"<script>alert(1)</script>", "text/html", None).await;
    let page = get(&bob, &format!("/_matrix/client/v1/media/download/{}", media_path(&page))).await;
    assert_eq!(
        (page.header("content-type"), page.header("content-disposition")),
        ("text/html", "attachment")
    );
    let odd = alice.upload(&picture, "img/png", None).await;
    let odd = get(&bob, &format!("/_matrix/client/v1/media/download/{}", media_path(&odd))).await;
    assert_eq!((odd.header("content-type"), odd.header("content-disposition")), ("img/png", "attachment"));
    // No type given: bytes.
    let untyped = alice.raw(Method::POST, "/_matrix/media/v3/upload", &[], b"raw".to_vec()).await;
    let untyped = get(
        &bob,
        &format!(
            "/_matrix/client/v1/media/download/{}",
            media_path(untyped.json()["content_uri"].as_str().expect("uri"))
        ),
    )
    .await;
    assert_eq!(untyped.header("content-type"), "application/octet-stream");

    // The config says how large uploads may be.
    let config = get(&bob, "/_matrix/client/v1/media/config").await.json();
    assert_eq!(config["m.upload.size"], 50 * 1024 * 1024);

    // Errors: no token, unknown media, IDs outside the spec's alphabet
    // (after the token check, as Complement expects).
    server
        .client()
        .raw(Method::GET, &format!("/_matrix/client/v1/media/download/{id}"), &[], Vec::new())
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    let smuggled = format!(
        "/_matrix/client/v1/media/download/tessera.test/mxc:%2F%2Ftessera.test%2F{}",
        id.rsplit('/').next().expect("id")
    );
    server.client().raw(Method::GET, &smuggled, &[], Vec::new()).await.assert_error(401, "M_MISSING_TOKEN");
    get(&bob, &smuggled).await.assert_error(404, "M_NOT_FOUND");
    get(&bob, "/_matrix/client/v1/media/download/tessera.test/NoSuchMedia")
        .await
        .assert_error(404, "M_NOT_FOUND");
    get(&bob, "/_matrix/client/v1/media/download/tessera.test/..%2F..%2Fetc")
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .raw(Method::PATCH, "/_matrix/media/v3/upload", &[], Vec::new())
        .await
        .assert_error(405, "M_UNRECOGNIZED");
}

async fn downloads_serve_byte_ranges(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let audio: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let mxc = alice.upload(&audio, "audio/ogg", Some("voice.ogg")).await;
    let path = format!("/_matrix/client/v1/media/download/{}", media_path(&mxc));

    let part = alice.raw(Method::GET, &path, &[("range", "bytes=100-199")], Vec::new()).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.bytes, audio[100..200]);
    assert_eq!(part.header("content-range"), "bytes 100-199/10000");
    assert_eq!(part.header("accept-ranges"), "bytes");

    let tail = alice.raw(Method::GET, &path, &[("range", "bytes=-500")], Vec::new()).await;
    assert_eq!((tail.status, tail.bytes.as_slice()), (206, &audio[9_500..]));
    let rest = alice.raw(Method::GET, &path, &[("range", "bytes=9990-")], Vec::new()).await;
    assert_eq!((rest.status, rest.bytes.as_slice()), (206, &audio[9_990..]));

    let outside = alice.raw(Method::GET, &path, &[("range", "bytes=20000-")], Vec::new()).await;
    assert_eq!(outside.status, 416);
    assert_eq!(outside.header("content-range"), "bytes */10000");
    // Several ranges: the whole file.
    let several = alice.raw(Method::GET, &path, &[("range", "bytes=0-1,5-6")], Vec::new()).await;
    assert_eq!((several.status, several.bytes.len()), (200, audio.len()));
}

async fn the_same_bytes_are_stored_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let file = b"the same file, sent twice".to_vec();
    let first = alice.upload(&file, "text/plain", Some("a.txt")).await;
    let second = bob.upload(&file, "application/octet-stream", Some("b.bin")).await;
    assert_ne!(first, second, "each upload gets its own media ID");

    // Each keeps its own type and name...
    let second_download =
        get(&alice, &format!("/_matrix/client/v1/media/download/{}", media_path(&second))).await;
    assert_eq!(second_download.header("content-disposition"), "attachment; filename=b.bin");
    assert_eq!(second_download.bytes, file);
    // ...but the bytes are on disk once.
    let blobs = files_under(&server.data_dir().join("media"));
    assert_eq!(blobs.len(), 1, "{blobs:?}");
}

/// The blob files under `dir` (staging aside).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("media directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() && !path.ends_with("staging") {
                stack.push(path);
            } else if path.is_file() {
                found.push(path);
            }
        }
    }
    found
}

async fn uploads_past_the_limits_are_refused(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.media.max_upload_bytes = 1000;
        config.media.max_bytes_per_user = 1500;
        config.media.max_pending_uploads = 2;
    })
    .await;
    let alice = server.register("alice", "pw").await;
    let too_large = alice
        .raw(
            Method::POST,
            "/_matrix/media/v3/upload",
            &[("content-type", "application/octet-stream")],
            vec![0; 1001],
        )
        .await;
    too_large.assert_error(413, "M_TOO_LARGE");
    assert_eq!(get(&alice, "/_matrix/media/v3/config").await.json()["m.upload.size"], 1000);

    alice.upload(&[1; 800], "application/octet-stream", None).await;
    let over_quota = alice.raw(Method::POST, "/_matrix/media/v3/upload", &[], vec![2; 800]).await;
    over_quota.assert_error(403, "M_FORBIDDEN");
    // Another user has a quota of their own.
    let bob = server.register("bob", "pw").await;
    bob.upload(&[2; 800], "application/octet-stream", None).await;

    // Reserved IDs not yet filled are limited too.
    for _ in 0..2 {
        assert_eq!(alice.raw(Method::POST, "/_matrix/media/v1/create", &[], Vec::new()).await.status, 200);
    }
    alice
        .raw(Method::POST, "/_matrix/media/v1/create", &[], Vec::new())
        .await
        .assert_error(429, "M_LIMIT_EXCEEDED");
    // Nothing of the refused uploads is left behind, staging included.
    assert_eq!(files_under(&server.data_dir().join("media")).len(), 2);
    let staging =
        std::fs::read_dir(server.data_dir().join("media").join("staging")).expect("staging").count();
    assert_eq!(staging, 0);
}

async fn an_asynchronous_upload_fills_a_reserved_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let created = alice.raw(Method::POST, "/_matrix/media/v1/create", &[], Vec::new()).await.json();
    let mxc = created["content_uri"].as_str().expect("content_uri").to_owned();
    assert!(created["unused_expires_at"].as_i64().expect("expiry") > 0);
    let id = media_path(&mxc);
    let download = format!("/_matrix/client/v1/media/download/{id}");

    // Not there yet: 504 once the wait is over.
    get(&bob, &format!("{download}?timeout_ms=100")).await.assert_error(504, "M_NOT_YET_UPLOADED");

    // A download waiting for it gets it as soon as it arrives.
    let waiting = {
        let bob = bob.clone();
        let download = download.clone();
        tokio::spawn(async move { get(&bob, &format!("{download}?timeout_ms=20000")).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let upload = format!("/_matrix/media/v3/upload/{id}?filename=late.txt");
    // Only its creator may fill it.
    bob.raw(Method::PUT, &upload, &[("content-type", "text/plain")], b"not mine".to_vec())
        .await
        .assert_error(403, "M_FORBIDDEN");
    let filled =
        alice.raw(Method::PUT, &upload, &[("content-type", "text/plain")], b"worth the wait".to_vec()).await;
    assert_eq!((filled.status, filled.json()), (200, serde_json::json!({})));
    let waited = waiting.await.expect("the waiting download");
    assert_eq!((waited.status, waited.bytes.as_slice()), (200, b"worth the wait".as_slice()));
    assert_eq!(waited.header("content-disposition"), "inline; filename=late.txt");

    // Filled once only; unknown IDs and other servers' are not found.
    alice
        .raw(Method::PUT, &upload, &[("content-type", "application/json")], Vec::new())
        .await
        .assert_error(409, "M_CANNOT_OVERWRITE_MEDIA");
    alice
        .raw(Method::PUT, "/_matrix/media/v3/upload/tessera.test/NeverCreated", &[], b"x".to_vec())
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .raw(Method::PUT, "/_matrix/media/v3/upload/elsewhere.test/abc", &[], b"x".to_vec())
        .await
        .assert_error(404, "M_NOT_FOUND");
}

async fn thumbnails_are_made_once_in_the_asked_shape(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let mxc = alice.upload(&png(1000, 500), "image/png", Some("wide.png")).await;
    let thumbnail = |query: &str| format!("/_matrix/client/v1/media/thumbnail/{}?{query}", media_path(&mxc));
    let decode = |response: &RawResponse| image::load_from_memory(&response.bytes).expect("a picture");

    // scale: the aspect ratio kept, inside the (rounded-up) box.
    let scaled = get(&alice, &thumbnail("width=320&height=240&method=scale")).await;
    assert_eq!((scaled.status, scaled.header("content-type")), (200, "image/png"));
    assert_eq!(scaled.header("content-disposition"), "inline; filename=thumbnail.png");
    let picture = decode(&scaled);
    assert_eq!((picture.width(), picture.height()), (320, 160));
    // crop: the asked shape, never smaller than asked.
    let cropped = decode(&get(&alice, &thumbnail("width=90&height=90&method=crop")).await);
    assert_eq!((cropped.width(), cropped.height()), (96, 96));
    // Made once and kept: asking again stores nothing new.
    let stored = files_under(&server.data_dir().join("media")).len();
    let again = get(&alice, &thumbnail("width=300&height=200&method=scale")).await;
    assert_eq!(again.bytes, scaled.bytes, "rounded up to the same thumbnail");
    assert_eq!(files_under(&server.data_dir().join("media")).len(), stored);

    // Larger than the original: the original, not upscaled.
    let original = get(&alice, &thumbnail("width=1600&height=1600")).await;
    assert_eq!(decode(&original).width(), 1000);

    // A JPEG stays a JPEG.
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(image::RgbImage::from_pixel(400, 400, image::Rgb([9, 9, 9])))
        .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .expect("encode JPEG");
    let photo = alice.upload(&jpeg, "image/jpeg", None).await;
    let photo =
        get(&alice, &format!("/_matrix/client/v1/media/thumbnail/{}?width=64&height=64", media_path(&photo)))
            .await;
    assert_eq!(photo.header("content-type"), "image/jpeg");

    // Not a picture, or a bad request.
    let text = alice.upload(b"hello", "text/plain", None).await;
    get(&alice, &format!("/_matrix/client/v1/media/thumbnail/{}?width=64&height=64", media_path(&text)))
        .await
        .assert_error(400, "M_UNKNOWN");
    get(&alice, &format!("/_matrix/client/v1/media/thumbnail/{}", media_path(&mxc)))
        .await
        .assert_error(400, "M_MISSING_PARAM");
    get(&alice, &thumbnail("width=0&height=10")).await.assert_error(400, "M_INVALID_PARAM");
    // The token is checked first.
    server
        .client()
        .raw(
            Method::GET,
            &format!("/_matrix/client/v1/media/thumbnail/{}", media_path(&mxc)),
            &[],
            Vec::new(),
        )
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

async fn the_unauthenticated_endpoints_serve_only_media_from_before_the_freeze(backend: Backend) {
    // Frozen for everything (the default).
    let frozen = TestServer::start(backend).await;
    let alice = frozen.register("alice", "pw").await;
    let mxc = alice.upload(&png(10, 10), "image/png", None).await;
    let legacy = format!("/_matrix/media/v3/download/{}", media_path(&mxc));
    get(&frozen.client(), &legacy).await.assert_error(404, "M_NOT_FOUND");
    get(&frozen.client(), &format!("/_matrix/media/v3/thumbnail/{}?width=5&height=5", media_path(&mxc)))
        .await
        .assert_error(404, "M_NOT_FOUND");

    // A server frozen later serves what came before it, without a token.
    let open =
        TestServer::start_with(backend, |config| config.media.unauthenticated_until_ms = i64::MAX).await;
    let alice = open.register("alice", "pw").await;
    let picture = png(10, 10);
    let mxc = alice.upload(&picture, "image/png", Some("ascii")).await;
    let download = get(&open.client(), &format!("/_matrix/media/v3/download/{}", media_path(&mxc))).await;
    assert_eq!((download.status, download.bytes.as_slice()), (200, picture.as_slice()));
    assert_eq!(download.header("content-disposition"), "inline; filename=ascii");
    let thumbnail =
        get(&open.client(), &format!("/_matrix/media/v3/thumbnail/{}?width=32&height=32", media_path(&mxc)))
            .await;
    assert_eq!((thumbnail.status, thumbnail.header("content-type")), (200, "image/png"));
}

async fn another_servers_media_is_fetched_over_federation_and_cached(backend: Backend) {
    let (_ca, mut a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let picture = png(600, 300);
    let mxc = alice.upload(&picture, "img/png", Some("🐔")).await;
    let remote = format!("/_matrix/client/v1/media/download/{}", media_path(&mxc));

    // The frozen unauthenticated API does not fetch it either (it would be
    // new media here).
    get(&b.client(), &format!("/_matrix/media/v3/download/{}", media_path(&mxc)))
        .await
        .assert_error(404, "M_NOT_FOUND");
    let fetched = get(&bob, &remote).await;
    assert_eq!(fetched.status, 200, "{}", String::from_utf8_lossy(&fetched.bytes));
    assert_eq!(fetched.bytes, picture);
    assert_eq!(fetched.header("content-type"), "img/png", "the type survives federation");
    assert_eq!(fetched.header("content-disposition"), "attachment; filename*=utf-8''%F0%9F%90%94");

    let thumbnail = get(
        &bob,
        &format!("/_matrix/client/v1/media/thumbnail/{}?width=32&height=32&method=crop", media_path(&mxc)),
    )
    .await;
    assert_eq!((thumbnail.status, thumbnail.header("content-type")), (200, "image/png"));
    assert_eq!(image::load_from_memory(&thumbnail.bytes).expect("a picture").width(), 32);
    get(&bob, &format!("/_matrix/client/v1/media/download/{}/NoSuchMedia", a.server_name()))
        .await
        .assert_error(404, "M_NOT_FOUND");

    // A gone: B still serves its copy.
    a.stop().await.expect("A stops");
    let cached = get(&bob, &remote).await;
    assert_eq!((cached.status, cached.bytes.as_slice()), (200, picture.as_slice()));
}

async fn messages_with_files_are_found_by_the_contains_url_filter(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let mxc = alice.upload(&png(20, 20), "image/png", Some("test.png")).await;
    let room_id = alice.create_room(serde_json::json!({})).await;
    alice.send_text(&room_id, "no file here").await;
    let file = serde_json::json!({ "msgtype": "m.image", "body": "test.png", "url": mxc });
    alice.put(&format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/img1"), file).await.ok();

    let messages = |contains_url: bool| {
        let filter = encode_all(&serde_json::json!({ "contains_url": contains_url }).to_string());
        format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&filter={filter}")
    };
    let with_url = alice.get(&messages(true)).await.ok();
    let chunk = with_url["chunk"].as_array().expect("chunk");
    assert_eq!(chunk.len(), 1, "{with_url}");
    assert_eq!(chunk[0]["content"]["url"], mxc.as_str());
    // The page reached the room's start and still says where it stopped;
    // from there, nothing more and no `end`.
    let end = with_url["end"].as_str().expect("end on a non-empty page");
    let after = alice.get(&format!("{}&from={end}", messages(true))).await.ok();
    assert_eq!((after["chunk"].as_array().map(Vec::len), after.get("end")), (Some(0), None), "{after}");
    let without_url = alice.get(&messages(false)).await.ok();
    let chunk = without_url["chunk"].as_array().expect("chunk");
    assert!(chunk.iter().all(|event| event["content"].get("url").is_none()), "{without_url}");
    assert!(chunk.iter().any(|event| event["content"]["body"] == "no file here"), "{without_url}");
}

/// Serves `/page.html` and `/picture.png` over plain HTTP on loopback,
/// any number of times; returns the base URL.
async fn web_server(html: String, picture: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (html, picture) = (html.clone(), picture.clone());
            tokio::spawn(async move {
                let mut request = vec![0; 4096];
                let read = socket.read(&mut request).await.unwrap_or(0);
                let line =
                    String::from_utf8_lossy(&request[..read]).lines().next().unwrap_or_default().to_owned();
                let (content_type, body) = match line.split(' ').nth(1) {
                    Some("/page.html") => ("text/html; charset=utf-8", html.into_bytes()),
                    Some("/picture.png") => ("image/png", picture),
                    _ => ("text/plain", b"not here".to_vec()),
                };
                let status = if content_type == "text/plain" { "404 Not Found" } else { "200 OK" };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    base
}

async fn url_previews_read_open_graph_and_store_the_picture(backend: Backend) {
    let picture = png(279, 129);
    let html = r#"<html><head><title>The Rock (1996)</title>
        <meta property="og:title" content="The Rock" />
        <meta property="og:type" content="video.movie" />
        <meta property="og:image" content="picture.png" />
        </head><body>ignored</body></html>"#;
    let site = web_server(html.to_owned(), picture.clone()).await;

    // Off by default.
    let closed = TestServer::start(backend).await;
    let alice = closed.register("alice", "pw").await;
    let preview =
        format!("/_matrix/client/v1/media/preview_url?url={}", encode_all(&format!("{site}/page.html")));
    get(&alice, &preview).await.assert_error(403, "M_FORBIDDEN");

    let server = TestServer::start_with(backend, |config| {
        config.media.url_previews = true;
        config.outbound_allowed_ranges = "127.0.0.0/8".into();
    })
    .await;
    let alice = server.register("alice", "pw").await;
    let og = get(&alice, &preview).await.json();
    assert_eq!(og["og:title"], "The Rock");
    assert_eq!(og["og:type"], "video.movie");
    assert_eq!(og["matrix:image:size"], picture.len());
    assert_eq!((og["og:image:width"].as_u64(), og["og:image:height"].as_u64()), (Some(279), Some(129)));
    // The picture is now this server's media.
    let mxc = og["og:image"].as_str().expect("og:image");
    let stored = get(&alice, &format!("/_matrix/client/v1/media/download/{}", media_path(mxc))).await;
    assert_eq!(stored.bytes, picture);
    // The legacy path answers the same.
    let legacy = get(
        &alice,
        &format!("/_matrix/media/v3/preview_url?url={}", encode_all(&format!("{site}/page.html"))),
    )
    .await;
    assert_eq!(legacy.json()["og:title"], "The Rock");

    // Bad URLs, and addresses the outbound rules forbid.
    get(&alice, "/_matrix/client/v1/media/preview_url?url=not%20a%20url")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    get(&alice, "/_matrix/client/v1/media/preview_url?url=file%3A%2F%2F%2Fetc%2Fpasswd")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let private = encode_all("http://10.1.2.3/page.html");
    get(&alice, &format!("/_matrix/client/v1/media/preview_url?url={private}"))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

/// Runs `tessera media ...` on `server`'s data, as an operator would.
fn media_command(server: &TestServer, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("media")
        .args(args)
        .env_clear()
        .env("TESSERA_SERVER_NAME", server.server_name())
        .env("TESSERA_DATA_DIR", server.data_dir())
        .env("TESSERA_DATABASE_URL", server.database_url())
        .env("TESSERA_LOG", "warn")
        .output()
        .expect("run tessera");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes every stored file look written two hours ago (past the grace a
/// new file is given before cleanup may remove it).
fn age_files(server: &TestServer) {
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for path in files_under(&server.data_dir().join("media")) {
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(then))
            .expect("set mtime");
    }
}

async fn media_commands_purge_remote_files_and_remove_unused_ones(backend: Backend) {
    let (_ca, a, b) = two_servers(backend).await;
    let alice = a.register("alice", "pw").await;
    let bob = b.register("bob", "pw").await;
    let picture = png(300, 300);
    let mxc = alice.upload(&picture, "image/png", None).await;
    let local = bob.upload(b"bob's own file", "text/plain", None).await;
    let remote = format!("/_matrix/client/v1/media/download/{}", media_path(&mxc));
    assert_eq!(get(&bob, &remote).await.bytes, picture);
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{}?width=32&height=32", media_path(&mxc));
    assert_eq!(get(&bob, &thumbnail).await.status, 200);
    assert_eq!(
        files_under(&b.data_dir().join("media")).len(),
        3,
        "bob's file, A's picture and its thumbnail"
    );

    // Recently used remote media stays.
    assert!(media_command(&b, &["purge-remote", "--older-than", "1d"]).contains("removed 0 remote media"));
    age_files(&b);
    let out = media_command(&b, &["purge-remote", "--older-than", "0s"]);
    assert!(out.contains("removed 1 remote media") && out.contains("2 unused files"), "{out}");
    let left = files_under(&b.data_dir().join("media"));
    assert_eq!(left.len(), 1, "only bob's own file: {left:?}");
    assert_eq!(
        get(&bob, &format!("/_matrix/client/v1/media/download/{}", media_path(&local))).await.bytes,
        b"bob's own file"
    );
    // Asked for again, it is fetched again.
    assert_eq!(get(&bob, &remote).await.bytes, picture);

    // A file nothing names (a crash between the write and the record).
    let orphan = b.data_dir().join("media").join("ab").join("cd");
    std::fs::create_dir_all(&orphan).expect("blob directory");
    std::fs::write(orphan.join(format!("abcd{}", "0".repeat(60))), b"orphan").expect("orphan");
    age_files(&b);
    let out = media_command(&b, &["cleanup"]);
    assert!(out.contains("1 unused files"), "{out}");
    assert_eq!(files_under(&b.data_dir().join("media")).len(), 2);
}

/// The server's resident memory now, in bytes (Linux).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Samples the process's RSS every 20 ms until `done`; returns the peak.
fn watch_rss(pid: u32, done: std::sync::Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss_bytes(pid));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        peak
    })
}

async fn a_100_mb_file_streams_through_without_the_server_holding_it(backend: Backend) {
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SIZE: usize = 100 * 1024 * 1024;
    /// Well under the file: what it costs must not grow with the file.
    const BOUND: u64 = 40 * 1024 * 1024;

    let mut server = TestServer::start(backend).await;
    let alice = server.register("alice", "pw").await;
    let token = alice.token.clone().expect("token");
    server.stop().await.expect("the in-process server stops");
    // The real binary, alone in its process, so its memory is its own.
    let (child, base) = server.spawn_binary_with(&[("TESSERA_MEDIA_MAX_UPLOAD_BYTES", "209715200")]).await;
    let pid = child.id().expect("pid");
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let mut expected = Sha256::new();
    for _ in 0..SIZE / chunk.len() {
        expected.update(&chunk);
    }
    let expected = expected.finalize();

    // Upload over a raw connection, 64 KiB at a time.
    let before = rss_bytes(pid);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = watch_rss(pid, done.clone());
    let address = base.strip_prefix("http://").expect("http base");
    let mut socket = tokio::net::TcpStream::connect(address).await.expect("connect");
    let head = format!(
        "POST /_matrix/media/v3/upload?filename=big.bin HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {SIZE}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("headers");
    for _ in 0..SIZE / chunk.len() {
        socket.write_all(&chunk).await.expect("body");
    }
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).expect("body");
    let mxc: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let mxc = mxc["content_uri"].as_str().expect("content_uri").to_owned();

    // Download it back, reading as it comes.
    let url = format!("{base}/_matrix/client/v1/media/download/{}", media_path(&mxc));
    let mut response = reqwest::Client::new().get(url).bearer_auth(&token).send().await.expect("download");
    assert_eq!(response.status(), 200);
    let mut received = Sha256::new();
    let mut length = 0;
    while let Some(bytes) = response.chunk().await.expect("chunk") {
        length += bytes.len();
        received.update(&bytes);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = peak.await.expect("RSS watcher");
    assert_eq!((length, received.finalize()), (SIZE, expected), "the same 100 MB back");
    let growth = peak.saturating_sub(before);
    eprintln!("100 MiB up and down: server RSS {} MiB before, peak {} MiB", before >> 20, peak >> 20);
    assert!(growth < BOUND, "the server's memory grew by {} MiB for a 100 MiB file", growth / (1024 * 1024));
    drop(child);
}
