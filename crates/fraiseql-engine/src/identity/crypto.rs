//! jsonwebtoken's signatures computed with `ring`, the build's one crypto backend (rustls uses
//! it for TLS). jsonwebtoken ships backends for aws-lc-rs and RustCrypto only; this provider is
//! the small adapter between its `JwtSigner`/`JwtVerifier` traits and ring, for the algorithms
//! `[auth] algorithm` accepts (HS256, RS256, ES256). Anything else is refused.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::{digest, hmac, rand, signature as sig};

fn sig_err<E: std::fmt::Debug>(e: E) -> signature::Error {
    signature::Error::from_source(format!("{e:?}"))
}

struct Hs256(hmac::Key);

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.0, msg).as_ref().to_vec())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        // Constant time.
        hmac::verify(&self.0, msg, signature).map_err(sig_err)
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

struct Rs256Signer(sig::RsaKeyPair);

impl Signer<Vec<u8>> for Rs256Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let mut out = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(
                &sig::RSA_PKCS1_SHA256,
                &rand::SystemRandom::new(),
                msg,
                &mut out,
            )
            .map_err(sig_err)?;
        Ok(out)
    }
}

impl JwtSigner for Rs256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

struct Es256Signer(sig::EcdsaKeyPair);

impl Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self
            .0
            .sign(&rand::SystemRandom::new(), msg)
            .map_err(sig_err)?
            .as_ref()
            .to_vec())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// RS256 or ES256 verification with a public key (DER, or RSA modulus and exponent).
struct PublicVerifier {
    alg: Algorithm,
    key: DecodingKeyKind,
}

impl Verifier<Vec<u8>> for PublicVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        match (self.alg, &self.key) {
            (Algorithm::RS256, DecodingKeyKind::SecretOrDer(der)) => {
                sig::UnparsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, der)
                    .verify(msg, signature)
                    .map_err(sig_err)
            }
            (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                sig::RsaPublicKeyComponents { n, e }
                    .verify(&sig::RSA_PKCS1_2048_8192_SHA256, msg, signature)
                    .map_err(sig_err)
            }
            (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point)) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, signature)
                    .map_err(sig_err)
            }
            _ => Err(sig_err("unsupported key for the algorithm")),
        }
    }
}

impl JwtVerifier for PublicVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn family(alg: Algorithm) -> AlgorithmFamily {
    match alg {
        Algorithm::HS256 => AlgorithmFamily::Hmac,
        Algorithm::RS256 => AlgorithmFamily::Rsa,
        _ => AlgorithmFamily::Ec,
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if key.family() != family(*alg) {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(match alg {
        Algorithm::HS256 => Box::new(Hs256(hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()))),
        Algorithm::RS256 => Box::new(Rs256Signer(
            sig::RsaKeyPair::from_der(key.as_bytes())
                .or_else(|_| sig::RsaKeyPair::from_pkcs8(key.as_bytes()))
                .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?,
        )),
        Algorithm::ES256 => Box::new(Es256Signer(
            sig::EcdsaKeyPair::from_pkcs8(
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                key.as_bytes(),
                &rand::SystemRandom::new(),
            )
            .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
        )),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    })
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if key.family() != family(*alg) {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(match alg {
        Algorithm::HS256 => Box::new(Hs256(hmac::Key::new(
            hmac::HMAC_SHA256,
            key.try_get_as_bytes()?,
        ))),
        Algorithm::RS256 | Algorithm::ES256 => Box::new(PublicVerifier {
            alg: *alg,
            key: key.kind().clone(),
        }),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    })
}

fn unsupported_rsa(_: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    Err(Error::from(ErrorKind::InvalidAlgorithm))
}

fn unsupported_ec(_: &[u8], _: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    Err(Error::from(ErrorKind::InvalidAlgorithm))
}

fn unsupported_ed(_: &[u8], _: &EllipticCurve) -> Result<Vec<u8>> {
    Err(Error::from(ErrorKind::InvalidAlgorithm))
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(Error::from(ErrorKind::InvalidAlgorithm)),
    };
    Ok(digest::digest(alg, data).as_ref().to_vec())
}

/// The provider, installed once per process by [`install`].
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    // Only thumbprints are computed; deriving JWKs from private keys is not offered.
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: unsupported_rsa,
        rsa_pub_components_from_public_key: unsupported_rsa,
        ec_pub_components_from_private_key: unsupported_ec,
        ed_pub_components_from_private_key: unsupported_ed,
        compute_digest,
    },
};

/// Makes ring jsonwebtoken's crypto backend (idempotent; another provider installed first by
/// the application is kept).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}
