//! The PKCS#11 signer against a real SoftHSM2 token made in a temporary directory.
//! Without SoftHSM2 the test skips locally and fails in CI (CI=true).

use std::process::Command;

use dancu_keys::pkcs11::{Pkcs11Key, TokenConfig, find_softhsm};
use dancu_keys::{Signer, verify};

/// Makes a token in a fresh directory; returns its config, or None (skip) when SoftHSM2 is absent.
pub fn softhsm_token(name: &str) -> Option<(TokenConfig, std::path::PathBuf)> {
    let module = find_softhsm();
    let util = Command::new("softhsm2-util").arg("--version").output().is_ok_and(|o| o.status.success());
    if module.is_none() || !util {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "SoftHSM2 (package softhsm2) is required in CI and is missing"
        );
        eprintln!("skipped: SoftHSM2 is not installed");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("dancu-softhsm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .unwrap();
    // SAFETY: set once, before the module is loaded, in a test binary with a single test.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "dancu-test", "--so-pin", "010203", "--pin", "123456"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some((TokenConfig { module: module.unwrap(), token_label: "dancu-test".into(), pin: "123456".into() }, dir))
}

#[test]
fn a_key_on_the_token_signs_and_stays_there() {
    let Some((cfg, dir)) = softhsm_token("keys") else { return };
    let key = Pkcs11Key::generate(&cfg, "ds-0001").unwrap();
    let sig = key.sign(b"LDS security object").unwrap();
    assert!(verify(key.public_key_der(), b"LDS security object", &sig));
    assert!(!verify(key.public_key_der(), b"LDS security objecT", &sig));
    assert_eq!(key.key_id().len(), 16);
    // Reopened by label: the same key.
    let again = Pkcs11Key::open(&cfg, "ds-0001").unwrap();
    assert_eq!(again.public_key_der(), key.public_key_der());
    assert!(verify(again.public_key_der(), b"m", &key.sign(b"m").unwrap()));
    // A label in use is not overwritten; an unknown label, token or a wrong PIN is a clear error.
    assert!(Pkcs11Key::generate(&cfg, "ds-0001").unwrap_err().to_string().contains("already holds"));
    assert!(Pkcs11Key::open(&cfg, "ds-0002").unwrap_err().to_string().contains("no key pair labelled"));
    let other = TokenConfig { token_label: "nope".into(), ..cfg.clone() };
    assert!(Pkcs11Key::open(&other, "ds-0001").unwrap_err().to_string().contains("no PKCS#11 token"));
    // Many signatures through one session, from several threads.
    let key = std::sync::Arc::new(key);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let key = key.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let m = format!("{t}-{i}");
                    assert!(verify(key.public_key_der(), m.as_bytes(), &key.sign(m.as_bytes()).unwrap()));
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    let _ = std::fs::remove_dir_all(dir);
}
