import ArgumentParser
import Logging

/// `jindoud`: the Jindou daemons. Each runs in the foreground, logs to stderr, prints one
/// `ready <url>` line on stdout when it accepts work, and exits cleanly on SIGINT/SIGTERM.
@main
struct Jindoud: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jindoud",
        abstract: "Jindou daemons: a coordinator, expert workers, or a whole local cluster.",
        subcommands: [Worker.self, Coordinator.self, Local.self]
    )
}

/// Flags every daemon shares.
struct DaemonOptions: ParsableArguments {
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Flag(name: .customLong("no-prefault"), help: "Do not read every weight page at start (faster start, slower first request).")
    var noPrefault = false

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
    }

    /// Logs go to stderr; stdout carries only the `ready` line.
    func bootstrapLogging(label: String) -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { name in
            var handler = StreamLogHandler.standardError(label: name)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}

/// Parses `host:port` for ArgumentParser.
import JindouTransport
import JindouWire
import Foundation

/// Flags for the cluster secret.
struct SecretOptions: ParsableArguments {
    @Option(name: .customLong("token-file"), help: "File holding the cluster secret; node links and the admin API then require it.")
    var tokenFile: String?

    func load(logger: Logger) throws -> ClusterSecret? {
        guard let tokenFile else { return nil }
        let secret = try ClusterSecret(contentsOfFile: tokenFile)
        if let attributes = try? FileManager.default.attributesOfItem(atPath: tokenFile),
           let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
            logger.warning("the cluster secret file is readable by other users; chmod 600 it", metadata: ["file": "\(tokenFile)"])
        }
        return secret
    }
}

/// Flags for mutual TLS (all three or none).
struct TLSOptions: ParsableArguments {
    @Option(name: .customLong("tls-ca"), help: "Cluster CA certificate (PEM); with --tls-cert/--tls-key enables mutual TLS.")
    var ca: String?
    @Option(name: .customLong("tls-cert"), help: "This node's certificate (PEM), signed by the cluster CA.")
    var certificate: String?
    @Option(name: .customLong("tls-key"), help: "This node's private key (PEM).")
    var key: String?

    func validate() throws {
        let given = [ca, certificate, key].compactMap { $0 }.count
        guard given == 0 || given == 3 else { throw ValidationError("give all of --tls-ca, --tls-cert and --tls-key, or none") }
    }

    var node: NodeTLS? {
        guard let ca, let certificate, let key else { return nil }
        return NodeTLS(caPath: ca, certificatePath: certificate, keyPath: key)
    }

    var arguments: [String] {
        guard let ca, let certificate, let key else { return [] }
        return ["--tls-ca", ca, "--tls-cert", certificate, "--tls-key", key]
    }
}

/// Parses sizes like 512MiB, 8GB, 2048 (bytes).
func parseByteSize(_ text: String) -> UInt64? {
    let units: [(String, UInt64)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
                                     ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000), ("B", 1)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        return Double(text.dropLast(suffix.count)).map { UInt64($0 * Double(factor)) }
    }
    return UInt64(text)
}

extension Endpoint: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}
