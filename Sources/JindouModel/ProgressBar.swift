import Foundation

/// A byte-count progress bar on stderr, shown only on a terminal and only once the work
/// has taken longer than a moment (so tests and pipes stay quiet).
///
/// `@unchecked Sendable`: updated from one thread at a time (loading is sequential).
public final class ProgressBar: @unchecked Sendable {
    private let label: String
    private var total: Int
    private var done = 0
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var shown = false
    private let enabled: Bool

    public init(label: String, total: Int) {
        self.label = label
        self.total = max(total, 1)
        self.enabled = isatty(STDERR_FILENO) != 0
    }

    /// Sets the total once it is known.
    public func reset(total: Int) {
        self.total = max(total, 1)
    }

    public func advance(by bytes: Int) {
        done += bytes
        guard enabled else { return }
        let now = Date()
        if now.timeIntervalSince(start) < 0.4 || now.timeIntervalSince(lastDraw) < 0.1 { return }
        lastDraw = now
        draw(now: now)
    }

    public func finish() {
        guard enabled, shown else { return }
        draw(now: Date())
        FileHandle.standardError.write(Data("\n".utf8))
    }

    private func draw(now: Date) {
        shown = true
        let fraction = min(1, Double(done) / Double(total))
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let seconds = max(now.timeIntervalSince(start), 1e-3)
        let rate = Double(done) / seconds / 1e6
        let line = String(format: "\r%@ %@ %3.0f%%  %.2f/%.2f GB  %.0f MB/s", label, bar, fraction * 100,
                          Double(done) / 1e9, Double(total) / 1e9, rate)
        FileHandle.standardError.write(Data(line.utf8))
    }
}
