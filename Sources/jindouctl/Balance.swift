import ArgumentParser
import Foundation
import JindouBalancing
import JindouPlacement

/// `jindouctl balance`: offline load-balancing studies on routing traces (docs/balancing.md).
struct Balance: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Study load balance offline: synthetic routing traces, replication plans, serving bias.",
        subcommands: [BalanceTrace.self, BalanceSimulate.self, BalancePlan.self]
    )
}

struct BalanceTrace: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Write a synthetic skewed routing trace (Zipf over experts, a random hot set per layer).",
        discussion: "Example: jindouctl balance trace --experts 128 --layers 48 --top-k 8 --tokens 16384 --zipf 1.2 --seed 1 --out /tmp/zipf.trace"
    )

    @Option(help: "Routed experts per layer.") var experts: Int = 128
    @Option(help: "MoE layers.") var layers: Int = 48
    @Option(name: .customLong("top-k"), help: "Experts per token.") var topK: Int = 8
    @Option(help: "Tokens in the trace.") var tokens: Int = 16_384
    @Option(name: .customLong("tokens-per-step"), help: "Tokens per step (batch size).") var tokensPerStep: Int = 64
    @Option(help: "Zipf exponent s: rank r is chosen with probability ∝ r^-s.") var zipf: Double = 1.2
    @Option(name: .customLong("shift-every"), help: "Re-draw every layer's hot set every S steps (0: never).") var shiftEvery: Int = 0
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "Output trace file.") var out: String

    func validate() throws {
        guard experts >= 1 && experts <= 65_536 else { throw ValidationError("--experts must be in 1…65536") }
        guard layers >= 1 else { throw ValidationError("--layers must be ≥ 1") }
        guard topK >= 1 && topK <= experts else { throw ValidationError("--top-k must be in 1…--experts") }
        guard tokens >= 1 && tokensPerStep >= 1 else { throw ValidationError("--tokens and --tokens-per-step must be ≥ 1") }
        guard zipf >= 0 else { throw ValidationError("--zipf must be ≥ 0") }
        guard shiftEvery >= 0 else { throw ValidationError("--shift-every must be ≥ 0") }
    }

    func run() throws {
        let routing = SyntheticRouting(
            experts: experts, layers: layers, topK: topK,
            parameters: SyntheticTraceParameters(seed: seed, zipf: zipf, tokensPerStep: tokensPerStep, shiftEvery: shiftEvery))
        let start = Date()
        let trace = routing.generate(tokens: tokens)
        try trace.write(path: out)
        print("wrote \(out): \(trace.steps.count) steps × \(tokensPerStep) tokens, \(layers) layers, top-\(topK) of \(experts) (\(String(format: "%.1f", Date().timeIntervalSince(start))) s)")
    }
}

struct BalanceSimulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Replay a trace over simulated clusters: contiguous, EPLB replication, serving bias.",
        discussion: """
            Plans are made from one window of steps and measured on the next (the first window only warms up).
            Example: jindouctl balance simulate --trace /tmp/zipf.trace --workers 4,8,16 --extra-slots 0.125,0.25 \\
                       --bias-gamma 0.002 --bias-cap 0.05 --max-routing-change 0.1 --markdown table.md --plot balance.png
            """
    )

    @Option(help: "Trace file (jindouctl balance trace, or recorded).") var trace: String
    @Option(help: "Simulated worker counts, comma-separated.") var workers: String = "4,8,16"
    @Option(name: .customLong("extra-slots"), help: "Extra expert slots per layer, as fractions of the expert count.") var extraSlots: String = "0.125,0.25"
    @Option(name: .customLong("window-steps"), help: "Steps per statistics window.") var windowSteps: Int = 32
    @Option(name: .customLong("memory-cap"), help: "At most this many experts per worker and layer.") var memoryCap: Int?
    @Option(name: .customLong("bias-gamma"), help: "Serving-bias step γ per window (off when absent or 0).") var biasGamma: Float?
    @Option(name: .customLong("bias-cap"), help: "Serving-bias bound |b| ≤ cap.") var biasCap: Float = 0.05
    @Option(name: .customLong("max-routing-change"), help: "Back off the bias past this fraction of top-k choices changed.") var maxRoutingChange: Double = 0.1
    @Option(name: .customLong("max-kl"), help: "Back off the bias past this KL (nats) of a layer's choice distribution.") var maxKL: Double = .infinity
    @Flag(help: "Print one JSON object.") var json = false
    @Option(help: "Write the results as a Markdown table.") var markdown: String?
    @Option(help: "Write a PNG bar chart of max/mean worker load (window).") var plot: String?

    func parseList<T>(_ text: String, _ name: String, _ parse: (String) -> T?) throws -> [T] {
        let values = text.split(separator: ",").map { parse($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { throw ValidationError("\(name): '\(text)' is not a comma-separated list of numbers") }
        return values.map { $0! }
    }

    func validate() throws {
        let counts = try parseList(workers, "--workers") { Int($0) }
        guard counts.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--workers must be ≥ 1") }
        let extras = try parseList(extraSlots, "--extra-slots") { Double($0) }
        guard extras.allSatisfy({ $0 >= 0 }) else { throw ValidationError("--extra-slots must be ≥ 0") }
        guard windowSteps >= 1 else { throw ValidationError("--window-steps must be ≥ 1") }
        if let biasGamma, biasGamma < 0 { throw ValidationError("--bias-gamma must be ≥ 0") }
        guard biasCap >= 0, maxRoutingChange >= 0 else { throw ValidationError("--bias-cap and --max-routing-change must be ≥ 0") }
    }

    struct Report: Encodable {
        var trace: String
        var steps: Int
        var tokens: Int
        var results: [SimulationResult]
        var notes: [String]
    }

    func run() throws {
        let routingTrace = try RoutingTrace.read(path: trace)
        let bias = biasGamma.flatMap { $0 > 0 ? BiasSettings(gamma: $0, cap: biasCap, maxRoutingChange: maxRoutingChange, maxKL: maxKL) : nil }
        let configuration = SimulationConfiguration(
            workers: try parseList(workers, "--workers") { Int($0) },
            extraSlots: try parseList(extraSlots, "--extra-slots") { Double($0) },
            windowSteps: windowSteps, bias: bias, memoryCapExperts: memoryCap)
        let (results, notes) = try BalanceSimulator.run(trace: routingTrace, configuration: configuration)
        let table = BalanceSimulator.markdownTable(results)
        if let markdown { try table.write(toFile: markdown, atomically: true, encoding: .utf8) }
        if let plot {
            let methods = orderedUnique(results.map { label($0) })
            let groups = orderedUnique(results.map(\.workers))
            let values = groups.map { w in
                methods.map { m in results.first { $0.workers == w && label($0) == m }?.windowMaxOverMean ?? 0 }
            }
            let image = BalanceChart.render(groups: groups.map { "W=\($0)" }, methods: methods, values: values)
            try Data(image.pngData()).write(to: URL(fileURLWithPath: plot))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let report = Report(trace: trace, steps: routingTrace.steps.count, tokens: routingTrace.tokenCount, results: results, notes: notes)
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(table, terminator: "")
            for note in notes { print("note: \(note)") }
        }
    }

    private func label(_ r: SimulationResult) -> String {
        r.extraSlots > 0 ? "\(r.method) +\(String(format: "%g", r.extraSlots * 100))%" : r.method
    }

    private func orderedUnique<T: Hashable>(_ values: [T]) -> [T] {
        var seen = Set<T>()
        return values.filter { seen.insert($0).inserted }
    }
}

struct BalancePlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Plan a replicated placement from a trace's expert load and write it as a placement file.",
        discussion: """
            Trace layer i is model layer --model-layers[i] (the model's MoE layers in order). Example:
            jindouctl balance plan --trace /tmp/zipf.trace --workers w0,w1,w2,w3 --extra-slots 0.25 \\
              --model-layers 0-47 --out placement.json
            """
    )

    @Option(help: "Trace file.") var trace: String
    @Option(help: "Worker names, comma-separated.") var workers: String
    @Option(name: .customLong("extra-slots"), help: "Extra expert slots per layer, as a fraction of the expert count.") var extraSlots: Double = 0.25
    @Option(help: "tokens (EPLB) or activated (fewer expert reads per worker).") var objective: String = "tokens"
    @Option(name: .customLong("last-steps"), help: "Plan from the trace's last N steps (default all).") var lastSteps: Int?
    @Option(name: .customLong("memory-cap"), help: "At most this many experts per worker and layer.") var memoryCap: Int?
    @Option(name: .customLong("model-layers"), help: "The model's MoE layer indices, e.g. 1-47 (default 0…layers-1).") var modelLayers: String?
    @Option(help: "Placement version to write.") var version: UInt64 = 1
    @Option(help: "Output placement JSON file.") var out: String
    @Flag(help: "Print one JSON object.") var json = false

    var names: [String] { workers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    func validate() throws {
        guard !names.isEmpty, Set(names).count == names.count else { throw ValidationError("--workers must list distinct names") }
        guard ReplicationPlanner.Objective(rawValue: objective) != nil else { throw ValidationError("--objective must be tokens or activated") }
        guard extraSlots >= 0 else { throw ValidationError("--extra-slots must be ≥ 0") }
        if let lastSteps, lastSteps < 1 { throw ValidationError("--last-steps must be ≥ 1") }
    }

    struct Report: Encodable {
        var out: String
        var workers: [String]
        var predictedMaxOverMean: Double
        var maxCopies: Int
        enum CodingKeys: String, CodingKey {
            case out, workers
            case predictedMaxOverMean = "predicted_max_over_mean"
            case maxCopies = "max_copies"
        }
    }

    func run() throws {
        let routingTrace = try RoutingTrace.read(path: trace)
        let h = routingTrace.header
        let layers = try modelLayers.map { try parseExpertRanges($0, limit: 1 << 16) } ?? Array(0..<h.layers)
        guard layers.count == h.layers else {
            throw ValidationError("--model-layers names \(layers.count) layers, the trace has \(h.layers)")
        }
        let steps = routingTrace.steps.count
        let first = max(0, steps - (lastSteps ?? steps))
        let planner = ReplicationPlanner(workers: names.count, extraSlotFraction: extraSlots, memoryCapExperts: memoryCap,
                                         objective: ReplicationPlanner.Objective(rawValue: objective)!)
        let plan = try planner.plan(load: routingTrace.expertLoad(steps: first..<steps), steps: steps - first)
        let file = try plan.layout.placementFile(workerNames: names, modelLayers: layers, version: version)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(file).write(to: URL(fileURLWithPath: out))
        let report = Report(out: out, workers: names, predictedMaxOverMean: plan.predictedOverallMaxOverMean,
                            maxCopies: plan.copies.joined().max() ?? 1)
        if json {
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print("wrote \(out): \(names.count) workers, predicted max/mean \(String(format: "%.3f", report.predictedMaxOverMean)) on the planning window, up to \(report.maxCopies) copies per expert")
        }
    }
}
