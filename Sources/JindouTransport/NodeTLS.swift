import NIOCore
import NIOSSL

/// Mutual TLS for node links and the admin API: every node (coordinator, worker,
/// `jindouctl`) presents a certificate signed by the cluster's CA and accepts only peers
/// that do (`jindouctl certs init` writes the CA and the node certificates).
///
/// Peers are identified by the CA, not by host name: a certificate the cluster CA signed
/// is a member; hostnames are not checked, so nodes may be addressed by IP.
public struct NodeTLS: Sendable, Hashable {
    public let caPath: String
    public let certificatePath: String
    public let keyPath: String

    public init(caPath: String, certificatePath: String, keyPath: String) {
        self.caPath = caPath
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }

    /// `DIR/ca.pem`, `DIR/NAME.pem`, `DIR/NAME-key.pem`, as `jindouctl certs init` writes them.
    public init(directory: String, name: String) {
        self.init(caPath: directory + "/ca.pem", certificatePath: directory + "/\(name).pem",
                  keyPath: directory + "/\(name)-key.pem")
    }

    func load() throws -> (ca: [NIOSSLCertificate], chain: [NIOSSLCertificate], key: NIOSSLPrivateKey) {
        do {
            return (try NIOSSLCertificate.fromPEMFile(caPath), try NIOSSLCertificate.fromPEMFile(certificatePath),
                    try NIOSSLPrivateKey(file: keyPath, format: .pem))
        } catch {
            throw TLSSetupError(reason: "cannot load TLS files (CA \(caPath), certificate \(certificatePath), key \(keyPath)): \(error)")
        }
    }

    /// Accepts connections only from peers with a certificate the CA signed.
    public func serverConfiguration() throws -> TLSConfiguration {
        let (ca, chain, key) = try load()
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.trustRoots = .certificates(ca)
        configuration.certificateVerification = .noHostnameVerification
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }

    /// Connects presenting our certificate; trusts only servers the CA signed.
    public func clientConfiguration() throws -> TLSConfiguration {
        let (ca, chain, key) = try load()
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateChain = chain.map { .certificate($0) }
        configuration.privateKey = .privateKey(key)
        configuration.trustRoots = .certificates(ca)
        configuration.certificateVerification = .noHostnameVerification
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }

    public func serverContext() throws -> NIOSSLContext { try NIOSSLContext(configuration: serverConfiguration()) }
    public func clientContext() throws -> NIOSSLContext { try NIOSSLContext(configuration: clientConfiguration()) }
}

public struct TLSSetupError: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}
