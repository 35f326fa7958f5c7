//! The generated admin credential when several instances start at once.

use tokengate::http::{AdminAuth, AdminTokenOrigin};
use tokengate::{SqliteStore, TokenStore};
use tokengate_testkit::FlakyStore;

/// Two instances without `ADMIN_TOKEN` start together on one database and
/// both find no admin token: exactly one generated token is stored and
/// printed, the other instance says it was generated elsewhere, and both
/// accept the winner's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_starting_at_once_agree_on_one_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("admin.db").display());
    let sqlite = SqliteStore::connect(&url).await.unwrap();
    sqlite.migrate().await.unwrap();
    let store = FlakyStore::new(sqlite);
    // Both read "no admin token yet" before either writes one.
    store.synchronize_setting_reads(2);
    let (first, second) = tokio::join!(
        AdminAuth::load_or_generate(&store),
        AdminAuth::load_or_generate(&store)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    let (winner, loser) = match (&first.1, &second.1) {
        (AdminTokenOrigin::Generated(_), _) => (&first, &second),
        (_, AdminTokenOrigin::Generated(_)) => (&second, &first),
        other => panic!("nobody generated a token: {other:?}"),
    };
    let AdminTokenOrigin::Generated(token) = &winner.1 else {
        unreachable!()
    };
    assert!(
        matches!(loser.1, AdminTokenOrigin::GeneratedElsewhere),
        "the other instance says so: {:?}",
        loser.1
    );
    assert!(winner.0.accepts(token.expose_secret()));
    assert!(loser.0.accepts(token.expose_secret()));

    // A later start loads the stored one.
    let (later, origin) = AdminAuth::load_or_generate(&store).await.unwrap();
    assert!(matches!(origin, AdminTokenOrigin::Stored), "{origin:?}");
    assert!(later.accepts(token.expose_secret()));
}
