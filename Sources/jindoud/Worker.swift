import ArgumentParser
import JindouTransport
import JindouWire
import JindouWorker
import ServiceLifecycle

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a shard of routed experts to a coordinator.",
        discussion: """
            Loads only its experts from a local copy of the checkpoint.
            --experts: 'all', 'contiguous:I/N' or 'round-robin:I/N' (this worker is number I of N, from 0,
            matching the coordinator's --placement contiguous|round-robin), or ranges like '0-31,40'
            (those experts of every MoE layer). With --placement FILE the worker hosts what the file
            assigns to its --name.
            Example: jindoud worker --model /models/qwen3-30b --listen 0.0.0.0:7070 --experts contiguous:0/3 --name gpu-box-0
            """
    )

    @Option(help: "Checkpoint directory (config.json + safetensors), a local copy.")
    var model: String

    @Option(help: "Address to accept coordinator connections on (port 0 picks a free port).")
    var listen: Endpoint = Endpoint(host: "0.0.0.0", port: 7070)

    @Option(help: "Experts to host: all | contiguous:I/N | round-robin:I/N | ranges like 0-31,40.")
    var experts: String = "all"

    @Option(help: "A placement file; host what it assigns to --name.")
    var placement: String?

    @Option(help: "This worker's name (default: hostname:port).")
    var name: String?

    @Option(name: .customLong("max-payload-mb"), help: "Largest frame payload accepted, in MiB.")
    var maxPayloadMB: Int = 1024

    @OptionGroup var daemon: DaemonOptions

    func validate() throws {
        if placement != nil && name == nil { throw ValidationError("--placement needs --name (the worker's name in the file)") }
        guard maxPayloadMB > 0 else { throw ValidationError("--max-payload-mb must be positive") }
    }

    func run() async throws {
        let logger = daemon.bootstrapLogging(label: "jindou.worker")
        let service: WorkerService
        do {
            service = try await WorkerService(
                options: .init(modelDirectory: model, listen: listen, expertSpec: experts, placementFile: placement,
                               name: name, maximumPayloadLength: maxPayloadMB << 20, prefault: !daemon.noPrefault),
                logger: logger)
        } catch {
            throw DaemonError(error)
        }
        announceReadyLine(service.url)
        let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

/// One readable line at the edge.
struct DaemonError: Error, CustomStringConvertible {
    let description: String
    init(_ error: Error) { description = "\(error)" }
}

import Foundation

func announceReadyLine(_ url: String) {
    FileHandle.standardOutput.write(Data("ready \(url)\n".utf8))
}
