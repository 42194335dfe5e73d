//! Test certificate authorities, made with the `openssl` command (Debian's, on every machine
//! the suite runs on): a CA, server certificates for 127.0.0.1 and localhost, client
//! certificates with a chosen subject. Keys are PKCS#8 PEM, files mode 600.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A CA whose files live in `dir`, named after it.
pub struct TestCa {
    dir: PathBuf,
    name: String,
}

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (the TLS tests make their CAs with it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestCa {
    /// A new self-signed CA `name` (valid two days) in `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let (key, cert) = (format!("{name}-ca.key"), format!("{name}-ca.crt"));
        let subject = format!("/CN={name} test CA");
        openssl(
            dir,
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &cert, "-days", "2"]
                .into_iter()
                .chain(["-subj", &subject])
                .collect::<Vec<_>>(),
        );
        TestCa { dir: dir.to_path_buf(), name: name.to_string() }
    }

    /// The CA's certificate (PEM), for trust stores.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.crt", self.name))
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self, name: &str) -> Issued {
        self.issue(
            name,
            "/CN=localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
    }

    /// A client certificate with `subject` (openssl's `/CN=…/O=…` form).
    pub fn client(&self, name: &str, subject: &str) -> Issued {
        self.issue(
            name,
            subject,
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n",
        )
    }

    fn issue(&self, name: &str, subject: &str, extensions: &str) -> Issued {
        let dir = &self.dir;
        let (rsa, csr, ext) = (format!("{name}.rsa"), format!("{name}.csr"), format!("{name}.ext"));
        let (cert, key) = (format!("{name}.crt"), format!("{name}.key"));
        std::fs::write(dir.join(&ext), extensions).unwrap();
        openssl(
            dir,
            &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &rsa, "-out", &csr, "-subj", subject],
        );
        let (ca_cert, ca_key) = (format!("{}-ca.crt", self.name), format!("{}-ca.key", self.name));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
            ]
            .into_iter()
            .chain(["-days", "2", "-extfile", &ext])
            .collect::<Vec<_>>(),
        );
        openssl(dir, &["pkcs8", "-topk8", "-nocrypt", "-in", &rsa, "-out", &key]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(&key), std::fs::Permissions::from_mode(0o600)).unwrap();
        Issued { cert: dir.join(cert), key: dir.join(key) }
    }
}

/// A rustls client (ring, TLS 1.2 and 1.3) trusting the CAs in `ca`, presenting `identity` when
/// given: what rskafka and other rustls clients take.
pub fn rustls_client(ca: &Path, identity: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    Arc::new(match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_file_iter(&id.cert).unwrap().map(Result::unwrap).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&id.key).unwrap()).unwrap()
        }
    })
}
