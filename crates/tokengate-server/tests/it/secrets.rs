//! Every type that holds a secret, a secret's hash, or the admin credential
//! prints redacted in `Debug` (and `Display` where it has one).

use std::sync::Arc;

use crate::support::TestApp;
use tokengate::TokenId;
use tokengate::http::AdminAuth;
use tokengate::{CredentialStore, Manager, NewToken, TokenStore};

fn assert_redacted(shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(!shown.contains(secret), "{shown:?} shows {secret:?}");
    }
}

#[tokio::test]
async fn debug_output_never_contains_secrets_or_hashes() {
    let app = TestApp::new().await;
    Manager::new(&app.gate)
        .set_account_plan("acct", "pro")
        .await
        .unwrap();
    let created = Manager::new(&app.gate)
        .create_token("acct", "CI", None)
        .await
        .unwrap();
    let token = created.token.expose_secret().to_owned();
    let secret_part = token[24..68].to_owned();
    let id: TokenId = token[4..24].parse().unwrap();
    let credential = app.store.find_credential(&id).await.unwrap().unwrap();
    let hash = credential.secret_hash.clone();
    let hash_tail = &hash[hash.len() - 20..];
    let secrets = [
        token.as_str(),
        secret_part.as_str(),
        &token[24..40],
        hash_tail,
    ];

    let (_, rotated) = Manager::new(&app.gate)
        .rotate_token(&id, std::time::Duration::from_secs(60), None)
        .await
        .unwrap();
    let rotated_token = rotated.token.expose_secret().to_owned();

    let new_token = NewToken {
        id: TokenId::random(),
        account_id: "acct".into(),
        name: "n".into(),
        secret_hash: hash.clone(),
        secret_tag: credential.secret_tag.unwrap(),
        hint: "abcd".into(),
        created_at: Manager::new(&app.gate).now(),
        expires_at: None,
        scopes: vec!["*".into()],
        window_id: None,
    };
    let store: Arc<dyn TokenStore> = app.store.clone();
    let (_, generated) = AdminAuth::reset(store.as_ref()).await.unwrap();
    let admin_token = generated.expose_secret().to_owned();

    let shown = [
        format!("{created:?}"),
        format!("{:?}", created.token),
        format!("{}", created.token),
        format!("{rotated:?}"),
        format!("{:?}", rotated.token),
        format!("{credential:?}"),
        format!("{new_token:?}"),
        format!("{generated:?}"),
        format!("{:?}", AdminAuth::from_token(&admin_token)),
        format!("{:?}", app.gate),
    ];
    for text in &shown {
        assert_redacted(text, &secrets);
        assert_redacted(text, &[&rotated_token[24..68], &admin_token[8..]]);
        assert!(!text.contains("$argon2id$"), "{text}");
    }
    // The redacted forms still say what they are.
    assert!(shown[1].contains("redacted"));
    assert!(shown[0].contains(&id.to_string()), "ids are not secrets");
}
