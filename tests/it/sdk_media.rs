//! Media through a stock client: matrix-sdk (Element X's SDK) uploads an
//! avatar and sends an image; another member's client downloads both, and
//! a thumbnail of the image, through the authenticated media API.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, RgbaImage};
use matrix_sdk::{
    attachment::AttachmentConfig,
    media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings},
    ruma::{
        UInt,
        api::client::room::create_room,
        events::{
            MessageLikeEventContent,
            room::{
                MediaSource,
                message::{MessageType, OriginalSyncRoomMessageEvent},
            },
        },
    },
};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
    sdk_client::SdkClient,
};

both_backends!(sdk_clients_share_an_avatar_and_an_image_with_its_thumbnail);

fn png(width: u32, height: u32) -> Vec<u8> {
    let image =
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(width, height, image::Rgba([250, 100, 0, 255])));
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).expect("encode PNG");
    bytes
}

async fn sdk_clients_share_an_avatar_and_an_image_with_its_thumbnail(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = SdkClient::login(&server, "alice").await;
    let bob = SdkClient::login(&server, "bob").await;

    // Alice sets an avatar; Bob's client reads her profile and downloads it.
    let avatar = png(96, 96);
    let avatar_uri =
        alice.client.account().upload_avatar(&mime::IMAGE_PNG, avatar.clone()).await.expect("avatar set");
    let profile = bob.client.account().fetch_user_profile_of(&alice.user_id()).await.expect("profile");
    let avatar_url = profile.get("avatar_url").and_then(|url| url.as_str()).expect("avatar_url").to_owned();
    assert_eq!(avatar_url, avatar_uri.as_str());
    let file = |source: MediaSource| MediaRequestParameters { source, format: MediaFormat::File };
    let downloaded = bob
        .client
        .media()
        .get_media_content(&file(MediaSource::Plain(avatar_uri.clone())), false)
        .await
        .expect("avatar downloads");
    assert_eq!(downloaded, avatar);

    // Alice sends a photo to a room they share.
    let mut request = create_room::v3::Request::new();
    request.invite = vec![bob.user_id()];
    let alice_room = alice.client.create_room(request).await.expect("room");
    let bob_room = bob.client.join_room_by_id(alice_room.room_id()).await.expect("bob joins");
    let photo = png(1200, 900);
    let sent = alice_room
        .send_attachment("photo.png", &mime::IMAGE_PNG, photo.clone(), AttachmentConfig::new())
        .await
        .expect("image sent");

    // Bob's client reads the event, then the image and a thumbnail of it.
    let event = bob_room.event(&sent.event_id, None).await.expect("the image event");
    let event: OriginalSyncRoomMessageEvent =
        serde_json::from_str(event.raw().json().get()).expect("a message");
    assert_eq!(event.content.event_type().to_string(), "m.room.message");
    let MessageType::Image(image) = event.content.msgtype else { panic!("not an image: {event:?}") };
    assert_eq!(image.body, "photo.png");
    let full = bob.client.media().get_media_content(&file(image.source.clone()), false).await.expect("image");
    assert_eq!(full, photo);
    let size = |n: u32| UInt::from(n);
    let thumbnail = MediaRequestParameters {
        source: image.source,
        format: MediaFormat::Thumbnail(MediaThumbnailSettings::new(size(320), size(240))),
    };
    let thumbnail = bob.client.media().get_media_content(&thumbnail, false).await.expect("thumbnail");
    let thumbnail = image::load_from_memory(&thumbnail).expect("a picture");
    assert_eq!((thumbnail.width(), thumbnail.height()), (320, 240));
}
