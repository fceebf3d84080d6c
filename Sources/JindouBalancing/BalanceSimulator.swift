import Foundation

/// What `jindouctl balance simulate` replays.
public struct SimulationConfiguration: Sendable {
    public var workers: [Int]
    public var extraSlots: [Double]
    /// Steps per statistics window: a plan made from window i is evaluated on window i+1.
    public var windowSteps: Int
    /// Serving bias, if simulated (needs a synthetic trace: the scores are regenerated).
    public var bias: BiasSettings?
    public var memoryCapExperts: Int?

    public init(workers: [Int], extraSlots: [Double], windowSteps: Int, bias: BiasSettings? = nil, memoryCapExperts: Int? = nil) {
        self.workers = workers
        self.extraSlots = extraSlots
        self.windowSteps = max(1, windowSteps)
        self.bias = bias
        self.memoryCapExperts = memoryCapExperts
    }
}

/// One simulated cluster configuration's measurements (windows after the first).
public struct SimulationResult: Sendable, Codable, Equatable {
    public var workers: Int
    /// `none` (contiguous), `replication`, `replication-activated`, `bias`, `bias+replication`.
    public var method: String
    public var extraSlots: Double
    /// Σ max / Σ mean worker tokens per (window, layer).
    public var windowMaxOverMean: Double
    /// Σ max / Σ mean worker tokens per (step, layer).
    public var stepMaxOverMean: Double
    /// Mean over (step, layer) of the most activated worker's distinct experts.
    public var meanMaxActivated: Double
    /// Mean distinct experts activated per worker per step.
    public var meanActivated: Double
    public var peakActivated: Int
    /// Worst accepted routing change (bias methods only).
    public var routingChanged: Double?
    public var routingKL: Double?

    enum CodingKeys: String, CodingKey {
        case workers, method
        case extraSlots = "extra_slots"
        case windowMaxOverMean = "window_max_over_mean"
        case stepMaxOverMean = "step_max_over_mean"
        case meanMaxActivated = "mean_max_activated"
        case meanActivated = "mean_activated"
        case peakActivated = "peak_activated"
        case routingChanged = "routing_changed"
        case routingKL = "routing_kl"
    }
}

/// Replays a trace over simulated clusters.
public enum BalanceSimulator {
    /// Every method for every worker count. `notes` says what was skipped and why.
    public static func run(trace: RoutingTrace, configuration: SimulationConfiguration) throws -> (results: [SimulationResult], notes: [String]) {
        let h = trace.header
        let window = configuration.windowSteps
        let windows = (trace.steps.count + window - 1) / window
        guard windows >= 2 else {
            throw TraceError.shapeMismatch("the trace has \(trace.steps.count) steps: need at least 2 windows of \(window) steps (plan on one, measure the next)")
        }
        var notes: [String] = []
        var biasReplay: BiasReplay?
        if let settings = configuration.bias {
            if let routing = SyntheticRouting(header: h) {
                biasReplay = BiasReplay(trace: trace, routing: routing, settings: settings, windowSteps: window)
                notes.append("bias: γ \(settings.gamma), cap \(settings.cap), limit \(settings.maxRoutingChange) changed; \(biasReplay!.backoffs) back-offs")
            } else {
                notes.append("bias skipped: the trace has no synthetic score model (recorded traces store choices only)")
            }
        }
        func range(_ i: Int) -> Range<Int> { (i * window)..<min(trace.steps.count, (i + 1) * window) }
        func loads(_ steps: [TraceStep]) -> [[[Double]]] {
            (0..<windows).map { RoutingTrace(header: h, steps: Array(steps[range($0)])).expertLoad() }
        }
        let unbiasedLoad = loads(trace.steps)
        let biasedLoad = biasReplay.map { loads($0.steps) }

        var results: [SimulationResult] = []
        for w in configuration.workers {
            func measure(method: String, extra: Double, steps: [TraceStep], choice: ReplicaChoice = .rotate,
                         layout: (Int) throws -> ReplicaLayout) rethrows -> SimulationResult {
                var acc = BalanceAccumulator(workers: w, choice: choice)
                for i in 1..<windows {
                    acc.add(steps: steps[range(i)], layout: try layout(i), experts: h.experts, topK: h.topK)
                }
                let biased = method.hasPrefix("bias")
                return SimulationResult(
                    workers: w, method: method, extraSlots: extra, windowMaxOverMean: acc.windowMaxOverMean,
                    stepMaxOverMean: acc.stepMaxOverMean, meanMaxActivated: acc.meanMaxActivated,
                    meanActivated: acc.meanActivated, peakActivated: acc.activatedPeak,
                    routingChanged: biased ? biasReplay?.worst.changedFraction : nil,
                    routingKL: biased ? biasReplay?.worst.maxKL : nil)
            }
            let contiguous = ReplicaLayout.contiguous(experts: h.experts, layers: h.layers, workers: w)
            results.append(measure(method: "none", extra: 0, steps: trace.steps) { _ in contiguous })
            for extra in configuration.extraSlots {
                for objective in ReplicationPlanner.Objective.allCases {
                    let planner = ReplicationPlanner(workers: w, extraSlotFraction: extra, memoryCapExperts: configuration.memoryCapExperts, objective: objective)
                    let name = objective == .tokens ? "replication" : "replication-activated"
                    results.append(try measure(method: name, extra: extra, steps: trace.steps) { i in
                        try planner.plan(load: unbiasedLoad[i - 1], steps: range(i - 1).count).layout
                    })
                    if objective == .tokens {
                        // The same placement, each step's replica choice by that step's load.
                        results.append(try measure(method: "replication+step-choice", extra: extra, steps: trace.steps,
                                                   choice: .leastLoaded) { i in
                            try planner.plan(load: unbiasedLoad[i - 1], steps: range(i - 1).count).layout
                        })
                    }
                }
            }
            if let replay = biasReplay, let biasedLoad {
                results.append(measure(method: "bias", extra: 0, steps: replay.steps) { _ in contiguous })
                if let extra = configuration.extraSlots.max() {
                    let planner = ReplicationPlanner(workers: w, extraSlotFraction: extra, memoryCapExperts: configuration.memoryCapExperts)
                    results.append(try measure(method: "bias+replication", extra: extra, steps: replay.steps) { i in
                        try planner.plan(load: biasedLoad[i - 1], steps: range(i - 1).count).layout
                    })
                }
            }
        }
        return (results, notes)
    }

    /// A Markdown table of the results.
    public static func markdownTable(_ results: [SimulationResult]) -> String {
        var lines = [
            "| workers | method | extra slots | max/mean (window) | max/mean (step) | max activated / worker / step | mean activated | routing changed | KL (nats) |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results {
            let extra = r.extraSlots > 0 ? String(format: "+%.1f %%", r.extraSlots * 100) : "—"
            let changed = r.routingChanged.map { String(format: "%.1f %%", $0 * 100) } ?? "—"
            let kl = r.routingKL.map { String(format: "%.4f", $0) } ?? "—"
            let numbers = String(format: "%.3f | %.3f | %.2f | %.2f", r.windowMaxOverMean, r.stepMaxOverMean, r.meanMaxActivated, r.meanActivated)
            lines.append("| \(r.workers) | \(r.method) | \(extra) | \(numbers) | \(changed) | \(kl) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
