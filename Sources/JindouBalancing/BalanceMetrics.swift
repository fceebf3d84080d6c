import Foundation

/// Measures a layout against routed steps: worker load in tokens (max/mean) and activated
/// experts per worker per step. Both objectives, for any layout.
///
/// Token split: an expert's n tokens in a step go to its c copies round-robin starting at
/// copy (step mod c), so copies get ⌊n/c⌋ or ⌈n/c⌉ tokens. A copy is *activated* in a step
/// when it receives at least one token: its weights must be read.
public struct BalanceAccumulator: Sendable {
    public let workers: Int
    /// How a step's tokens of a replicated expert are split over its copies.
    public let choice: ReplicaChoice
    /// Σ over (window, layer) of the max worker's tokens, and of the mean worker's.
    private var windowMaxSum = 0.0, windowMeanSum = 0.0
    /// Σ over (step, layer) of the max worker's tokens, and of the mean worker's.
    private var stepMaxSum = 0.0, stepMeanSum = 0.0
    /// Σ over (step, layer) of the most activated worker's count, and of the mean count.
    private var activatedMaxSum = 0.0, activatedMeanSum = 0.0
    public private(set) var activatedPeak = 0
    private var stepLayers = 0

    public init(workers: Int, choice: ReplicaChoice = .rotate) {
        self.workers = workers
        self.choice = choice
    }

    /// Adds one window of steps routed under `layout`.
    public mutating func add(steps: ArraySlice<TraceStep>, layout: ReplicaLayout, experts: Int, topK: Int) {
        let layers = layout.layers
        var windowTokens = [[Int]](repeating: [Int](repeating: 0, count: workers), count: layers)
        var counts = [Int](repeating: 0, count: experts)
        var workerTokens = [Int](repeating: 0, count: workers)
        var workerActive = [Int](repeating: 0, count: workers)
        for (stepIndex, step) in zip(steps.indices, steps) {
            for layer in 0..<layers {
                for e in 0..<experts { counts[e] = 0 }
                let base = layer * step.tokens * topK
                step.choices.withUnsafeBufferPointer { c in
                    for i in base..<(base + step.tokens * topK) { counts[Int(c[i])] += 1 }
                }
                for w in 0..<workers { workerTokens[w] = 0; workerActive[w] = 0 }
                let hosts = layout.hosts[layer]
                switch choice {
                case .rotate:
                    for e in 0..<experts where counts[e] > 0 {
                        let copies = hosts[e]
                        let c = copies.count, n = counts[e]
                        let q = n / c, r = n % c
                        for (j, w) in copies.enumerated() {
                            let share = q + ((j - stepIndex % c + c) % c < r ? 1 : 0)
                            if share > 0 { workerTokens[w] += share; workerActive[w] += 1 }
                        }
                    }
                case .leastLoaded:
                    ReplicaChoice.fill(counts: counts, hosts: hosts, tokens: &workerTokens, active: &workerActive)
                }
                var maxTokens = 0, sumTokens = 0, maxActive = 0, sumActive = 0
                for w in 0..<workers {
                    maxTokens = max(maxTokens, workerTokens[w]); sumTokens += workerTokens[w]
                    maxActive = max(maxActive, workerActive[w]); sumActive += workerActive[w]
                    windowTokens[layer][w] += workerTokens[w]
                }
                stepMaxSum += Double(maxTokens); stepMeanSum += Double(sumTokens) / Double(workers)
                activatedMaxSum += Double(maxActive); activatedMeanSum += Double(sumActive) / Double(workers)
                activatedPeak = max(activatedPeak, maxActive)
                stepLayers += 1
            }
        }
        for layer in 0..<layers {
            windowMaxSum += Double(windowTokens[layer].max() ?? 0)
            windowMeanSum += Double(windowTokens[layer].reduce(0, +)) / Double(workers)
        }
    }

    /// Σ max / Σ mean of worker tokens over each (window, layer): the load a planner sees.
    public var windowMaxOverMean: Double { windowMeanSum > 0 ? windowMaxSum / windowMeanSum : 1 }
    /// Σ max / Σ mean over each (step, layer): what a step actually waits for, including
    /// per-step sampling noise that no placement removes.
    public var stepMaxOverMean: Double { stepMeanSum > 0 ? stepMaxSum / stepMeanSum : 1 }
    /// Mean over (step, layer) of the most activated worker's distinct experts.
    public var meanMaxActivated: Double { stepLayers > 0 ? activatedMaxSum / Double(stepLayers) : 0 }
    /// Mean over (step, layer, worker) of distinct experts activated.
    public var meanActivated: Double { stepLayers > 0 ? activatedMeanSum / Double(stepLayers) : 0 }
}

/// How the tokens a step routes to a replicated expert are split over its copies.
public enum ReplicaChoice: String, Sendable, CaseIterable, Codable {
    /// In turn, whatever else the step sends each copy's worker (the even split per expert).
    case rotate
    /// By the step's load: experts with one copy are placed first, then each replicated
    /// expert's tokens (heaviest expert first) go one at a time to the copy whose worker has
    /// the fewest tokens in this step so far — water-filling, so the step's busiest worker,
    /// which the whole step waits for, is as light as the placement allows.
    case leastLoaded = "least-loaded"

    /// The least-loaded split of one (step, layer): `counts[e]` tokens for expert e, its
    /// copies' workers `hosts[e]`; adds to `tokens` and `active` (distinct experts) per worker.
    public static func fill(counts: [Int], hosts: [[Int]], tokens: inout [Int], active: inout [Int]) {
        let given = split(counts: counts, hosts: hosts, tokens: &tokens)
        for e in counts.indices where counts[e] > 0 {
            for (j, w) in hosts[e].enumerated() where given[e].isEmpty ? j == 0 : given[e][j] > 0 { active[w] += 1 }
        }
    }

    /// How many of each expert's `counts[e]` tokens go to each of its copies `hosts[e]`
    /// (workers as indices into `tokens`, each worker's tokens this step so far, updated):
    /// experts with one copy first; then water-filling, heaviest replicated expert first,
    /// each token to the copy whose worker is lightest; then, while the busiest worker holds
    /// a copy whose expert another copy could take a token of without becoming as busy,
    /// one token moves there. `given[e]` is empty for an expert with one copy.
    public static func split(counts: [Int], hosts: [[Int]], tokens: inout [Int]) -> [[Int]] {
        var given = [[Int]](repeating: [], count: counts.count)
        var replicated: [Int] = []
        for e in counts.indices where counts[e] > 0 {
            if hosts[e].count == 1 {
                tokens[hosts[e][0]] += counts[e]
            } else {
                replicated.append(e)
            }
        }
        replicated.sort { counts[$0] > counts[$1] || (counts[$0] == counts[$1] && $0 < $1) }
        for e in replicated {
            given[e] = [Int](repeating: 0, count: hosts[e].count)
            for _ in 0..<counts[e] {
                var best = 0
                for j in 1..<hosts[e].count where tokens[hosts[e][j]] < tokens[hosts[e][best]] { best = j }
                tokens[hosts[e][best]] += 1
                given[e][best] += 1
            }
        }
        var improved = true
        while improved {
            improved = false
            guard let busiest = tokens.indices.max(by: { tokens[$0] < tokens[$1] }) else { break }
            search: for e in replicated {
                guard let from = hosts[e].firstIndex(of: busiest), given[e][from] > 0 else { continue }
                for (j, w) in hosts[e].enumerated() where j != from && tokens[w] + 1 < tokens[busiest] {
                    given[e][from] -= 1
                    given[e][j] += 1
                    tokens[busiest] -= 1
                    tokens[w] += 1
                    improved = true
                    break search
                }
            }
        }
        return given
    }
}
