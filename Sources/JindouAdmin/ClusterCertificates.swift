import Crypto
import Foundation
import X509

/// `jindouctl certs init`: a cluster CA and one certificate per node, for mutual TLS on
/// node links and the admin API (see `NodeTLS`).
///
/// Writes `ca.pem` + `ca-key.pem` (keep the key offline once nodes are issued) and, per
/// node, `NAME.pem` + `NAME-key.pem` (P-256, usable as both TLS client and server). Private
/// keys are written with mode 0600.
public enum ClusterCertificates {
    public static func initialize(directory: String, nodes: [String], hosts: [String] = [], days: Int = 825) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let caKeyPath = directory + "/ca-key.pem", caPath = directory + "/ca.pem"
        let caKey: P256.Signing.PrivateKey
        let caCertificate: Certificate
        if FileManager.default.fileExists(atPath: caKeyPath), FileManager.default.fileExists(atPath: caPath) {
            // Issuing more nodes for an existing cluster.
            caKey = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: caKeyPath, encoding: .utf8))
            caCertificate = try Certificate(pemEncoded: String(contentsOfFile: caPath, encoding: .utf8))
        } else {
            caKey = P256.Signing.PrivateKey()
            let name = try DistinguishedName {
                OrganizationName("Jindou cluster")
                CommonName("Jindou cluster CA")
            }
            let now = Date()
            caCertificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(caKey.publicKey),
                notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(3650 * 86_400),
                issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                },
                issuerPrivateKey: .init(caKey))
            try write(caKey.pemRepresentation, to: caKeyPath, secret: true)
            try write(try caCertificate.serializeAsPEM().pemString, to: caPath, secret: false)
        }
        var written = [caPath]
        for node in nodes {
            let key = P256.Signing.PrivateKey()
            let subject = try DistinguishedName {
                OrganizationName("Jindou cluster")
                CommonName(node)
            }
            var names: [GeneralName] = [.dnsName(node), .dnsName("localhost")]
            names += hosts.map { GeneralName.dnsName($0) }
            let now = Date()
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
                notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
                issuer: caCertificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                    try ExtendedKeyUsage([.serverAuth, .clientAuth])
                    SubjectAlternativeNames(names)
                },
                issuerPrivateKey: .init(caKey))
            try write(key.pemRepresentation, to: directory + "/\(node)-key.pem", secret: true)
            try write(try certificate.serializeAsPEM().pemString, to: directory + "/\(node).pem", secret: false)
            written += [directory + "/\(node).pem", directory + "/\(node)-key.pem"]
        }
        return written
    }

    static func write(_ text: String, to path: String, secret: Bool) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8),
                                             attributes: [.posixPermissions: secret ? 0o600 : 0o644]) else {
            throw AdminClientError.badURL("cannot write \(path)")
        }
    }
}
