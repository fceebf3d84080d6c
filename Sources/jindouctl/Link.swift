import ArgumentParser
import Foundation
import JindouTransport
import ServiceLifecycle

/// `jindouctl link`: emulated network links for benchmarks and tests on one machine.
struct Link: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Emulate network links (delay, jitter, rate) and measure them.",
        discussion: """
            tc netem is missing on many kernels; `link relay` adds the delay in user space and forwards TCP.
            Bandwidth is shaped by the relay (--rate) or by tc tbf on the namespace harness's veth pairs
            (cluster/netns/cluster.sh up N --rate 1gbit).

              jindouctl link relay --link 127.0.0.1:7170=10.77.0.2:7070 --rtt 200us --jitter 20us
              jindouctl link echo --listen 10.77.0.2:7171          # inside a namespace
              jindouctl link probe 127.0.0.1:7171 --json            # through a relay to that echo server
            """,
        subcommands: [Relay.self, Echo.self, Probe.self]
    )
}

extension Link {
    struct Relay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forward TCP connections through an emulated link until SIGTERM/SIGINT.",
            discussion: "Prints `ready LISTEN=TARGET` per link once every listener is bound.")

        @Option(name: .customLong("link"), help: "LISTEN=TARGET, e.g. 127.0.0.1:7170=10.77.0.2:7070 (repeatable; port 0 picks one).")
        var links: [String] = []

        @Option(help: "Added round-trip time (each direction gets half), e.g. 50us, 200us, 1ms.")
        var rtt = "0"

        @Option(help: "Uniform jitter of each direction's delay, ±this (at most half the RTT).")
        var jitter = "0"

        @Option(help: "Line rate of each direction in the relay, e.g. 1gbit (default: unshaped).")
        var rate: String?

        @Option(help: "Seed of the jitter sequence.")
        var seed: UInt64 = 1

        func validate() throws {
            guard !links.isEmpty else { throw ValidationError("give at least one --link LISTEN=TARGET") }
            for link in links { _ = try parse(link) }
            do { _ = try LinkProfile(rtt: rtt, jitter: jitter, rate: rate) } catch { throw ValidationError("\(error)") }
        }

        func parse(_ link: String) throws -> (Endpoint, Endpoint) {
            let parts = link.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let listen = Endpoint(parts[0]), let target = Endpoint(parts[1]) else {
                throw ValidationError("--link '\(link)': expected LISTEN=TARGET, e.g. 127.0.0.1:7170=10.77.0.2:7070")
            }
            return (listen, target)
        }

        func run() async throws {
            let profile = try LinkProfile(rtt: rtt, jitter: jitter, rate: rate)
            var relays: [LinkRelay] = []
            for (index, link) in links.enumerated() {
                let (listen, target) = try parse(link)
                do {
                    relays.append(try await LinkRelay(listen: listen, target: target, profile: profile, seed: seed &+ UInt64(index) &* 2))
                } catch {
                    throw CLIError(message: "cannot listen on \(listen): \(error)")
                }
            }
            let lines = relays.map { "ready \($0.endpoint)=\($0.target) (\(profile))\n" }.joined()
            FileHandle.standardOutput.write(Data(lines.utf8))
            try await ServiceGroup(services: [UntilShutdown()], gracefulShutdownSignals: [.sigterm, .sigint],
                                   logger: .init(label: "jindouctl.link")).run()
            for relay in relays { await relay.close() }
        }
    }

    struct Echo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A TCP echo server, the far end of `link probe`, until SIGTERM/SIGINT.")

        @Option(help: "Address to listen on.")
        var listen = "127.0.0.1:7171"

        func run() async throws {
            guard let endpoint = Endpoint(listen) else { throw ValidationError("--listen '\(listen)': expected HOST:PORT") }
            let server = try await EchoServer(listen: endpoint)
            FileHandle.standardOutput.write(Data("ready \(server.endpoint)\n".utf8))
            try await ServiceGroup(services: [UntilShutdown()], gracefulShutdownSignals: [.sigterm, .sigint],
                                   logger: .init(label: "jindouctl.link")).run()
            await server.close()
        }
    }

    struct Probe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Round-trip time and goodput to a `link echo` server.")

        @Argument(help: "HOST:PORT of an echo server (directly or through a relay).")
        var target: String

        @Option(help: "Small-message round trips to time.")
        var samples = 200

        @Option(help: "Bytes of each bulk echo (goodput).")
        var bulkBytes = 4 << 20

        @Flag(help: "Print one JSON object.")
        var json = false

        func run() async throws {
            guard let endpoint = Endpoint(target) else { throw ValidationError("'\(target)': expected HOST:PORT") }
            let client: EchoClient
            do { client = try await EchoClient(to: endpoint) } catch { throw CLIError(message: "cannot reach \(endpoint): \(error)") }
            let measurement = try await LinkProbe.measure(samples: samples, bulkBytes: bulkBytes) { try await client.roundTrip($0) }
            await client.close()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(measurement), as: UTF8.self))
            } else {
                print("\(endpoint): \(measurement)")
            }
        }
    }
}

/// A service that does nothing until graceful shutdown.
struct UntilShutdown: Service {
    func run() async throws {
        try? await gracefulShutdown()
    }
}
