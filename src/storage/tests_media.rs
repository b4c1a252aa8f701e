//! Conformance tests of the media metadata, on every engine under test.

use super::tests::fixtures;
use super::*;

fn content(sha256: &str, size: i64) -> UploadedContent<'_> {
    UploadedContent { sha256, size, content_type: Some("image/png"), filename: Some("a.png"), now: 100 }
}

fn thumb(media_id: &str, sha256: &str) -> ThumbnailRecord {
    ThumbnailRecord {
        media_id: media_id.into(),
        width: 32,
        height: 32,
        method: "crop".into(),
        animated: false,
        sha256: sha256.into(),
        size: 10,
        content_type: "image/png".into(),
    }
}

#[tokio::test]
async fn media_uploads_pending_ids_thumbnails_and_deletion() {
    for fixture in fixtures().await {
        let s = &fixture.storage;
        s.insert_media("m1", "@a:x", &content("h1", 1000)).await.unwrap();
        s.insert_media("m2", "@a:x", &content("h1", 1000)).await.unwrap();
        let m1 = s.get_media("m1").await.unwrap().unwrap();
        assert_eq!((m1.uploaded_ts, m1.sha256.as_deref(), m1.size), (Some(100), Some("h1"), Some(1000)));
        assert_eq!(m1.filename.as_deref(), Some("a.png"));
        assert_eq!(s.media_usage("@a:x").await.unwrap(), 2000);
        assert_eq!(s.media_usage("@b:x").await.unwrap(), 0);

        // Pending ids: counted until they lapse or are filled, filled once.
        s.create_pending_media("p1", "@a:x", 10, 1000).await.unwrap();
        s.create_pending_media("p2", "@a:x", 10, 50).await.unwrap();
        assert_eq!(s.count_pending_media("@a:x", 40).await.unwrap(), 2);
        assert_eq!(s.count_pending_media("@a:x", 60).await.unwrap(), 1);
        assert!(s.get_media("p1").await.unwrap().unwrap().uploaded_ts.is_none());
        assert!(s.complete_pending_media("p1", &content("h2", 5)).await.unwrap());
        assert!(!s.complete_pending_media("p1", &content("h3", 5)).await.unwrap());
        let p1 = s.get_media("p1").await.unwrap().unwrap();
        assert_eq!((p1.sha256.as_deref(), p1.expires_ts), (Some("h2"), None));
        assert_eq!(s.delete_lapsed_pending_media(60).await.unwrap(), 1);
        assert!(s.get_media("p2").await.unwrap().is_none());

        // Thumbnails: one per key, the first kept.
        s.put_thumbnail(&thumb("m1", "t1")).await.unwrap();
        s.put_thumbnail(&thumb("m1", "t-other")).await.unwrap();
        let t = s.get_thumbnail("m1", 32, 32, "crop", false).await.unwrap().unwrap();
        assert_eq!(t.sha256, "t1");
        assert!(s.get_thumbnail("m1", 32, 32, "crop", true).await.unwrap().is_none());

        // Deleting returns the hashes; content stays referenced while another id holds it.
        let mut hashes = s.delete_media("m1").await.unwrap();
        hashes.sort();
        assert_eq!(hashes, vec!["h1".to_owned(), "t1".to_owned()]);
        assert!(s.content_referenced("h1").await.unwrap());
        assert!(!s.content_referenced("t1").await.unwrap());
        assert!(s.get_thumbnail("m1", 32, 32, "crop", false).await.unwrap().is_none());
        assert_eq!(s.delete_media("m2").await.unwrap(), vec!["h1".to_owned()]);
        assert!(!s.content_referenced("h1").await.unwrap());
        assert!(s.delete_media("m2").await.unwrap().is_empty());
        assert_eq!(s.list_user_media("@a:x").await.unwrap(), vec!["p1".to_owned()]);
        fixture.finish().await;
    }
}
