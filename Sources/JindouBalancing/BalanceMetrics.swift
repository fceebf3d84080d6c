import Foundation

/// Measures a layout against routed steps: worker load in tokens (max/mean) and activated
/// experts per worker per step. Both objectives, for any layout.
///
/// Token split: an expert's n tokens in a step go to its c copies round-robin starting at
/// copy (step mod c), so copies get ⌊n/c⌋ or ⌈n/c⌉ tokens. A copy is *activated* in a step
/// when it receives at least one token: its weights must be read.
public struct BalanceAccumulator: Sendable {
    public let workers: Int
    /// Σ over (window, layer) of the max worker's tokens, and of the mean worker's.
    private var windowMaxSum = 0.0, windowMeanSum = 0.0
    /// Σ over (step, layer) of the max worker's tokens, and of the mean worker's.
    private var stepMaxSum = 0.0, stepMeanSum = 0.0
    /// Σ over (step, layer) of the most activated worker's count, and of the mean count.
    private var activatedMaxSum = 0.0, activatedMeanSum = 0.0
    public private(set) var activatedPeak = 0
    private var stepLayers = 0

    public init(workers: Int) { self.workers = workers }

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
                for e in 0..<experts where counts[e] > 0 {
                    let copies = hosts[e]
                    let c = copies.count, n = counts[e]
                    let q = n / c, r = n % c
                    for (j, w) in copies.enumerated() {
                        let share = q + ((j - stepIndex % c + c) % c < r ? 1 : 0)
                        if share > 0 { workerTokens[w] += share; workerActive[w] += 1 }
                    }
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
