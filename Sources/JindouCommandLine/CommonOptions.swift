import ArgumentParser
import JindouTransport

/// Mutual-TLS flags shared by `jindoud` and `jindouctl` (all three or none).
public struct TLSOptions: ParsableArguments {
    @Option(name: .customLong("tls-ca"), help: "Cluster CA certificate (PEM); with --tls-cert/--tls-key enables mutual TLS.")
    public var ca: String?
    @Option(name: .customLong("tls-cert"), help: "This node's certificate (PEM), signed by the cluster CA.")
    public var certificate: String?
    @Option(name: .customLong("tls-key"), help: "This node's private key (PEM).")
    public var key: String?

    public init() {}

    public func validate() throws {
        let given = [ca, certificate, key].compactMap { $0 }.count
        guard given == 0 || given == 3 else { throw ValidationError("give all of --tls-ca, --tls-cert and --tls-key, or none") }
    }

    public var node: NodeTLS? {
        guard let ca, let certificate, let key else { return nil }
        return NodeTLS(caPath: ca, certificatePath: certificate, keyPath: key)
    }

    /// The same flags, to pass on to a child process.
    public var arguments: [String] {
        guard let ca, let certificate, let key else { return [] }
        return ["--tls-ca", ca, "--tls-cert", certificate, "--tls-key", key]
    }
}

/// Parses sizes like 512MiB, 8GB, 2048 (bytes).
public func parseByteSize(_ text: String) -> UInt64? {
    let units: [(String, UInt64)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
                                     ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000), ("B", 1)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        return Double(text.dropLast(suffix.count)).map { UInt64($0 * Double(factor)) }
    }
    return UInt64(text)
}

/// `--transport auto|tcp|shm`.
extension TransportChoice: ExpressibleByArgument {}

/// `host:port` flags.
extension Endpoint: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}
