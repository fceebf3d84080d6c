import ArgumentParser
import Foundation
import JindouAdmin
import JindouBalancing
import JindouCommandLine
import JindouPlacement
import JindouTransport
import JindouWire

/// Flags every command that talks to a coordinator shares.
struct ClusterOptions: ParsableArguments {
    @Option(help: "Coordinator URL (default: $JINDOU_COORDINATOR, else http://127.0.0.1:8080).")
    var coordinator: String?

    @Option(name: .customLong("token-file"), help: "File holding the cluster secret (default: $JINDOU_TOKEN_FILE).")
    var tokenFile: String?

    @OptionGroup var tls: TLSOptions

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func client() throws -> AdminClient {
        let url = coordinator ?? ProcessInfo.processInfo.environment["JINDOU_COORDINATOR"] ?? "http://127.0.0.1:8080"
        return try makeAdminClient(url: url, tokenFile: tokenFile, tls: tls)
    }

    /// Runs a request, turning any failure into one readable line.
    func call<T>(_ body: (AdminClient) async throws -> T) async throws -> T {
        let client = try client()
        do { return try await body(client) } catch let error as CLIError { throw error } catch { throw CLIError(error) }
    }

    func printJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        FileHandle.standardOutput.write(try encoder.encode(value) + Data("\n".utf8))
    }
}

/// An admin client from flags (and JINDOU_TOKEN_FILE).
func makeAdminClient(url: String, tokenFile: String?, tls: TLSOptions) throws -> AdminClient {
    let file = tokenFile ?? ProcessInfo.processInfo.environment["JINDOU_TOKEN_FILE"]
    do {
        let token = try file.map { try ClusterSecret(contentsOfFile: $0).token }
        return try AdminClient(url, token: token, tls: tls.node)
    } catch {
        throw CLIError(error)
    }
}

/// A plain text table: left-aligned columns separated by two spaces.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// Bytes in the largest unit that keeps the number ≥ 1 (decimal units, like `df -H`).
func megabytes(_ bytes: UInt64) -> String {
    let units: [(Double, String)] = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")]
    for (size, unit) in units where Double(bytes) >= size { return String(format: "%.1f %@", Double(bytes) / size, unit) }
    return "\(bytes) B"
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The cluster's workers, their state, shards and load.")
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let status = try await cluster.call { try await $0.get("v1/admin/status", as: ClusterStatus.self) }
        if cluster.json { return try cluster.printJSON(status) }
        print("model \(status.model)  placement v\(status.placementVersion)\(status.stagedVersion.map { " (staging v\($0))" } ?? "")  replicas \(status.replicas)\(status.pinned ? "  pinned" : "")\(status.settled ? "" : "  (changing)")  experts served \(status.servedExperts)/\(status.totalExperts)")
        if let fixed = status.sequenceFixedBytes, fixed > 0, let perToken = status.kvBytesPerToken {
            // Models with a recurrent state: the budget per sequence is fixed + per cached token (--json: always).
            print(String(format: "memory per sequence: %.1f MiB fixed + %.1f KiB per token", Double(fixed) / 1_048_576, Double(perToken) / 1024))
        }
        // FETCH: workers without a local checkpoint (`--cache-dir`), their current or last fetch.
        let fetching = status.workers.contains { $0.fetch != nil }
        print(table(["WORKER", "ADDRESS", "LINK", "STATE", "EXPERTS", "EXPERT MEM", "CAPACITY", "LOAD", "LAST SEEN"] + (fetching ? ["FETCH"] : []),
                    status.workers.map { w in
                        [w.name, w.address, w.transport ?? "-", w.state, String(w.experts), megabytes(w.expertBytes), megabytes(w.memoryBytes),
                         String(format: "%.1f%%", w.loadShare * 100), w.lastSeenSeconds.map { String(format: "%.1fs ago", $0) } ?? "never"]
                            + (fetching ? [w.fetch.map(Self.describe) ?? "local copy"] : [])
                    }))
    }

    static func describe(_ fetch: FetchStatus) -> String {
        guard fetch.totalBytes > 0 else { return "done" }
        let share = Double(fetch.fetchedBytes) / Double(fetch.totalBytes) * 100
        return fetch.fetchedBytes == fetch.totalBytes
            ? "done (\(megabytes(fetch.totalBytes)))"
            : String(format: "%.0f%% of ", share) + megabytes(fetch.totalBytes)
    }
}

struct Shards: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Which worker hosts which experts (replicas listed together).")
    @OptionGroup var cluster: ClusterOptions
    @Option(help: "Only this layer.")
    var layer: Int?

    func run() async throws {
        let query = layer.map { ["layer": String($0)] } ?? [:]
        let report = try await cluster.call { try await $0.get("v1/admin/shards", query: query, as: ShardsReport.self) }
        if cluster.json { return try cluster.printJSON(report) }
        print("placement v\(report.placementVersion)")
        var rows: [[String]] = []
        for layer in report.layers {
            // Group experts by their host set: "0-31 → a, b".
            var byHosts: [[String]: [Int]] = [:]
            for (expert, hosts) in layer.experts { byHosts[hosts, default: []].append(Int(expert) ?? 0) }
            for (hosts, experts) in byHosts.sorted(by: { ($0.value.min() ?? 0) < ($1.value.min() ?? 0) }) {
                rows.append([String(layer.layer), formatExpertRanges(experts), hosts.joined(separator: ", "), String(hosts.count)])
            }
        }
        print(table(["LAYER", "EXPERTS", "WORKERS", "COPIES"], rows))
    }
}

/// Prints a placement change (scale, drain, rebalance).
func show(_ change: PlacementChange, _ cluster: ClusterOptions) throws {
    if cluster.json { return try cluster.printJSON(change) }
    print("placement v\(change.fromVersion) → v\(change.toVersion)\(change.applied ? " (staged; switches once workers have loaded)" : " (dry run, nothing changed)")")
    if let predicted = change.predictedMaxOverMean {
        print(String(format: "worker load max/mean: %.3f now → %.3f predicted", change.currentMaxOverMean ?? 0, predicted))
    }
    print(table(["WORKER", "ADDED", "REMOVED"], change.diff.filter { $0.addedCount + $0.removedCount > 0 }.map {
        [$0.worker, "\($0.addedCount)", "\($0.removedCount)"]
    }))
}

struct Scale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set the number of copies of every expert (new workers are picked up automatically).")
    @OptionGroup var cluster: ClusterOptions
    @Option(help: "Copies of each expert.")
    var replicas: Int

    func validate() throws { guard replicas >= 1 else { throw ValidationError("--replicas must be ≥ 1") } }

    func run() async throws {
        let change = try await cluster.call { try await $0.post("v1/admin/scale", ScaleRequest(replicas: replicas), as: PlacementChange.self) }
        try show(change, cluster)
    }
}

struct Drain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Move a worker's experts elsewhere; when it shows 'drained' it can be stopped.")
    @OptionGroup var cluster: ClusterOptions
    @Argument(help: "Worker name.")
    var worker: String

    func run() async throws {
        let change = try await cluster.call { try await $0.post("v1/admin/drain", DrainRequest(worker: worker), as: PlacementChange.self) }
        try show(change, cluster)
    }
}

struct Rebalance: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Place experts by measured load to even out the workers.")
    @OptionGroup var cluster: ClusterOptions
    @Flag(name: .customLong("dry-run"), help: "Print the diff and predicted balance without changing anything.")
    var dryRun = false
    @Option(name: .customLong("extra-slots"),
            help: "Also replicate hot experts (EPLB) into this many extra slots per layer, as a fraction of the expert count (e.g. 0.25).")
    var extraSlots: Double?
    @Option(help: "With --extra-slots: balance 'tokens' per worker (EPLB) or 'activated' experts read per worker and step.")
    var objective: String?

    func validate() throws {
        if let extraSlots, !(0...64).contains(extraSlots) { throw ValidationError("--extra-slots must be in 0…64") }
        if let objective, !["tokens", "activated"].contains(objective) { throw ValidationError("--objective must be tokens or activated") }
        if objective != nil && extraSlots == nil { throw ValidationError("--objective needs --extra-slots") }
    }

    func run() async throws {
        let request = RebalanceRequest(dryRun: dryRun, extraSlots: extraSlots, objective: objective)
        let change = try await cluster.call { try await $0.post("v1/admin/rebalance", request, as: PlacementChange.self) }
        try show(change, cluster)
    }
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check every expert is served, workers agree on the model, replicas agree.")
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let report = try await cluster.call { try await $0.get("v1/admin/verify", as: VerifyReport.self) }
        if cluster.json { try cluster.printJSON(report) } else {
            print(table(["CHECK", "RESULT", "DETAIL"], report.checks.map { [$0.name, $0.ok ? "ok" : "FAILED", $0.detail] }))
        }
        if !report.ok { throw CLIError(message: "verification failed: " + report.checks.filter { !$0.ok }.map(\.name).joined(separator: ", ")) }
    }
}

struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Routing load over the coordinator's window (--load-window): per worker and per layer, and the serving bias.")
    @OptionGroup var cluster: ClusterOptions
    @Option(help: "Only this layer (its per-expert loads and bias are printed in full).")
    var layer: Int?
    @Option(help: ArgumentHelp("Also draw the window as a PNG: a layer × expert heat map and a per-worker bar chart.",
                               valueName: "FILE.png"))
    var plot: String?

    func run() async throws {
        let report = try await cluster.call { try await $0.get("v1/admin/load", as: LoadReport.self) }
        if let plot { try Self.draw(report, layer: layer, to: plot) }
        if cluster.json { return try cluster.printJSON(report) }
        guard let window = report.window else {
            // A coordinator from before the window: totals since start.
            print("tokens \(report.tokens) since start")
            print(table(["WORKER", "ASSIGNMENTS"], report.workers.sorted { $0.key < $1.key }.map { [$0.key, String($0.value)] }))
            return
        }
        print("window \(window.coveredSeconds)/\(window.seconds)s  tokens \(window.tokens)  assignments \(window.assignments)  "
              + String(format: "worker load max/mean %.3f (per layer %.3f)  activated experts max/mean %.3f",
                       window.workerMaxOverMean, window.stepMaxOverMean ?? 0, window.activatedMaxOverMean)
              + "  (since start: \(report.tokens) tokens)")
        print(table(["WORKER", "ASSIGNMENTS", "SHARE", "ACTIVATED/STEP", "HOSTED/LAYER", "SENT", "RECEIVED", "DISPATCH", "COMPUTE"],
                    window.workers.map { w in
                        [w.name, String(w.assignments), String(format: "%.1f%%", w.share * 100), String(format: "%.2f", w.activatedExpertsPerStep),
                         String(w.hostedExperts), megabytes(w.bytesSent), megabytes(w.bytesReceived), String(format: "%.3fs", w.dispatchSeconds),
                         String(format: "%.3fs", w.computeSeconds)]
                    }))
        let layers = window.layers.filter { layer == nil || $0.layer == layer }
        print(table(["LAYER", "MAX", "MEAN", "MAX/MEAN", "ACTIVE EXPERTS", "TOP"], layers.map { l in
            [String(l.layer), String(l.max), String(format: "%.1f", l.mean), String(format: "%.2f", l.maxOverMean),
             "\(l.activeExperts)/\(l.experts.count)",
             l.experts.enumerated().sorted { $0.element > $1.element }.prefix(5).map { "\($0.offset)=\($0.element)" }.joined(separator: " ")]
        }))
        if let layer, let row = layers.first {
            print("layer \(layer) experts: " + row.experts.enumerated().map { "\($0.offset)=\($0.element)" }.joined(separator: " "))
        }
        if let bias = report.bias {
            print(String(format: "serving bias: max |b| %.4f (cap %.4f, gamma %.4f)  routing change %.2f%% (limit %.2f%%)  KL %.4f  "
                         + "observed change %.2f%%  KL %.4f  back-offs %d  updates %d",
                         bias.maxAbsBias, bias.cap, bias.gamma, bias.routingChange * 100, bias.maxRoutingChange * 100, bias.divergence,
                         bias.observedRoutingChange * 100, bias.observedDivergence, bias.backoffs, bias.updates))
            if let layer, let l = bias.layers.first(where: { $0.layer == layer }) {
                print("layer \(layer) bias: " + l.bias.enumerated().map { String(format: "%d=%+.4f", $0.offset, $0.element) }.joined(separator: " "))
            }
        }
    }

    static func draw(_ report: LoadReport, layer: Int?, to path: String) throws {
        guard let window = report.window else {
            throw ValidationError("--plot needs the coordinator's load window (this coordinator reports only totals)")
        }
        let image = LoadPlot.render(
            layers: window.layers.filter { layer == nil || $0.layer == layer }.map { LoadPlot.Layer(layer: $0.layer, experts: $0.experts) },
            workers: window.workers.map { LoadPlot.Worker(name: $0.name, share: $0.share) })
        do {
            try Data(image.pngData()).write(to: URL(fileURLWithPath: path))
        } catch {
            throw ValidationError("cannot write \(path): \(error.localizedDescription)")
        }
    }
}
