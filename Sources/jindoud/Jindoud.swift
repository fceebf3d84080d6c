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

extension Endpoint: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}
