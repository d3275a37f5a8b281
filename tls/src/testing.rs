//! Throwaway certificate authorities for tests (feature `testing`): a CA, server certificates
//! for `localhost` and `127.0.0.1`, client certificates, all written as PEM files.
//!
//! ```no_run
//! let dir = tempfile::tempdir().expect("temp dir");
//! let ca = aap_tls::testing::TestCa::new(dir.path(), "test");
//! let server = ca.server("platform");
//! let bot = ca.client("bot");
//! let tls = aap_tls::ServerTls { cert: server.cert, key: server.key, client_ca: Some(ca.cert.clone()) };
//! # let _ = (tls, bot);
//! ```
//!
//! The helpers panic on failure, as test set-up does.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key (PKCS#8).
    pub key: PathBuf,
}

/// A CA that issues certificates into a directory.
pub struct TestCa {
    /// The CA's certificate (PEM): what clients trust, and servers check client certificates
    /// against.
    pub cert: PathBuf,
    name: String,
    dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("name", &self.name).field("cert", &self.cert).finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `<dir>/<name>-ca.crt`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("ca certificate");
        let cert = dir.join(format!("{name}-ca.crt"));
        write(&cert, &issuer.pem());
        TestCa { cert, name: name.to_owned(), dir: dir.to_owned(), issuer }
    }

    /// A server certificate for `localhost` and `127.0.0.1`, written to
    /// `<dir>/<ca>-<name>.crt` and `.key`.
    pub fn server(&self, name: &str) -> Issued {
        self.issue(name, vec!["localhost".to_owned(), "127.0.0.1".to_owned()], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose common name is `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Issued {
        let mut params = CertificateParams::new(names).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.issuer).expect("certificate");
        let issued = Issued {
            cert: self.dir.join(format!("{}-{name}.crt", self.name)),
            key: self.dir.join(format!("{}-{name}.key", self.name)),
        };
        write(&issued.cert, &certificate.pem());
        write(&issued.key, &key.serialize_pem());
        issued
    }
}

fn write(path: &Path, pem: &str) {
    if let Err(error) = std::fs::write(path, pem) {
        panic!("cannot write {}: {error}", path.display());
    }
}
