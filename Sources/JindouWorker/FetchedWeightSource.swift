import Foundation
import JindouAdmin
import JindouModel
import Logging
import Synchronization

/// A worker's weights without a local copy of the checkpoint (`jindoud worker --cache-dir`):
/// a mirror of the coordinator's model files in `cache/<fingerprint>/`, as sparse files of
/// the same sizes holding the headers and exactly the byte ranges of the experts this worker
/// was asked to hold (`ModelMirrorManifest`).
///
/// Ranges are fetched over the admin API (cluster secret, mutual TLS) in pieces of at most
/// `chunkBytes`, each checked against the SHA-256 the coordinator computed from its own
/// bytes, written, flushed, then recorded in the journal `.fetched` (file, offset, length,
/// hash). A worker killed mid-fetch resumes with what the journal lists; at every start the
/// journal's ranges are read back and re-hashed, and a range that no longer matches is
/// fetched again. `load` refuses any tensor with a byte not fetched and verified, so holes
/// of the sparse files are never read as weights.
public final class FetchedWeightSource: WeightSource, @unchecked Sendable {
    // @unchecked: `inner` and `manifest` are immutable; the journal is behind a Mutex.
    public let directory: String
    public let manifest: ModelMirrorManifest
    let inner: any MirrorableWeightSource
    let client: AdminClient
    let bytesPerSecond: Double?
    let chunkBytes: Int
    let logger: Logger
    let journal: Journal
    /// Serialises fetches (shard updates arrive one at a time; this keeps the rate limit simple).
    private let fetching = AsyncMutex()
    /// Progress of the current fetch, for `jindouctl status`.
    public let progress = Mutex<FetchProgress>(FetchProgress())

    /// Since this process started: bytes fetched, and bytes fetched plus still to fetch
    /// (equal when nothing is in flight); what the start re-verified and found damaged.
    public struct FetchProgress: Sendable, Equatable {
        public var fetchedBytes: UInt64 = 0
        public var totalBytes: UInt64 = 0
        public var verifiedAtStartBytes: UInt64 = 0
        public var refetchedCorruptBytes: UInt64 = 0
    }

    /// Contacts the coordinator for the manifest (retrying while it is unreachable),
    /// prepares the mirror and re-verifies what an earlier run fetched.
    public static func open(cacheDirectory: String, client: AdminClient, bytesPerSecond: Double?, chunkBytes: Int = 4 << 20,
                            logger: Logger) async throws -> FetchedWeightSource {
        var backoff = 0.25
        var manifest: ModelMirrorManifest
        while true {
            do {
                manifest = try await client.get("v1/node/manifest", as: ModelMirrorManifest.self)
                break
            } catch AdminClientError.status(let code, let message) {
                // A refusal (no secret, files not served) does not get better by retrying.
                throw FetchError("the coordinator refused the model manifest (\(code)): \(message)" +
                                 (code == 404 ? "; start it with --serve-model-files yes (or a --token-file)" : ""))
            } catch {
                logger.warning("cannot fetch the model manifest yet; retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(backoff))
                backoff = min(backoff * 2, 10)
            }
        }
        try manifest.validate()
        guard manifest.fingerprint.allSatisfy({ $0.isHexDigit }), !manifest.fingerprint.isEmpty else {
            throw FetchError("the manifest's fingerprint '\(manifest.fingerprint)' is not hexadecimal")
        }
        let directory = (cacheDirectory as NSString).appendingPathComponent(manifest.fingerprint)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Sparse files of the right sizes (existing ones keep their bytes).
        for file in manifest.files {
            let path = (directory as NSString).appendingPathComponent(file.name)
            let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw FetchError("cannot create \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var status = stat()
            guard fstat(fd, &status) == 0 else { throw FetchError("cannot stat \(path)") }
            if Int(status.st_size) != file.size, ftruncate(fd, off_t(file.size)) != 0 {
                throw FetchError("cannot size \(path) to \(file.size) bytes: \(String(cString: strerror(errno)))")
            }
        }
        let journal = try Journal(directory: directory, manifest: manifest, logger: logger)
        // The headers and small files are needed to open the mirror at all.
        for file in manifest.files where file.prefix > 0 {
            for range in journal.missing(ModelFileRange(file: file.name, offset: 0, length: file.prefix)) {
                for piece in range.pieces(of: chunkBytes) { try await fetch(piece, into: directory, client: client, journal: journal) }
            }
        }
        let path = manifest.entry == "." ? directory : (directory as NSString).appendingPathComponent(manifest.entry)
        guard let inner = try openWeightSource(path) as? any MirrorableWeightSource else { throw ModelMirrorError.notMirrorable(path) }
        let fingerprint = try inner.fingerprint()
        guard fingerprint == manifest.fingerprint else {
            throw ModelMirrorError.fingerprintMismatch(expected: manifest.fingerprint, actual: fingerprint)
        }
        return FetchedWeightSource(directory: directory, manifest: manifest, inner: inner, journal: journal, client: client,
                                   bytesPerSecond: bytesPerSecond, chunkBytes: chunkBytes, logger: logger)
    }

    private init(directory: String, manifest: ModelMirrorManifest, inner: any MirrorableWeightSource, journal: Journal,
                 client: AdminClient, bytesPerSecond: Double?, chunkBytes: Int, logger: Logger) {
        self.directory = directory
        self.manifest = manifest
        self.inner = inner
        self.journal = journal
        self.client = client
        self.bytesPerSecond = bytesPerSecond.flatMap { $0 > 0 && $0.isFinite ? $0 : nil }
        self.chunkBytes = max(4096, chunkBytes)
        self.logger = logger
        progress.withLock {
            $0.verifiedAtStartBytes = journal.verifiedAtStart
            $0.refetchedCorruptBytes = journal.corruptAtStart
        }
    }

    /// One piece: GET, check the hash, write, flush, journal.
    @discardableResult
    static func fetch(_ piece: ModelFileRange, into directory: String, client: AdminClient, journal: Journal) async throws -> Int {
        let (data, headers) = try await client.exchange(
            "GET", "v1/node/files/\(piece.file)", query: ["offset": String(piece.offset), "length": String(piece.length)], body: nil)
        guard data.count == piece.length else {
            throw FetchError("\(piece.file) bytes \(piece.offset)..<\(piece.end): got \(data.count) bytes")
        }
        let hash = ModelMirrorManifest.sha256(data)
        guard let expected = headers["x-jindou-sha256"], expected == hash else {
            throw FetchError("\(piece.file) bytes \(piece.offset)..<\(piece.end): SHA-256 \(hash) does not match the coordinator's \(headers["x-jindou-sha256"] ?? "(none)")")
        }
        let path = (directory as NSString).appendingPathComponent(piece.file)
        let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FetchError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try data.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(piece.offset + done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw FetchError("cannot write \(path): \(String(cString: strerror(errno)))") }
                done += n
            }
        }
        guard fdatasync(fd) == 0 else { throw FetchError("cannot flush \(path): \(String(cString: strerror(errno)))") }
        try journal.record(piece, sha256: hash)
        return data.count
    }

    /// Fetches every byte the experts `keys` need that is not here yet (rate-limited), so a
    /// later `load` of them succeeds. Progress is kept in `progress`.
    public func ensure(_ keys: [ExpertKey], description: ModelDescription) async throws {
        let ranges = try inner.fileRanges(of: keys.flatMap { description.expertTensors($0) })
        try await ensure(ranges)
    }

    func ensure(_ ranges: [ModelFileRange]) async throws {
        try await fetching.withLock {
            let missing = ranges.flatMap { journal.missing($0) }
            let pieces = missing.flatMap { $0.pieces(of: chunkBytes) }
            let total = pieces.reduce(0) { $0 + $1.length }
            guard total > 0 else { return }
            progress.withLock { $0.totalBytes += UInt64(total) }
            logger.info("fetching expert weights", metadata: ["bytes": "\(total)", "pieces": "\(pieces.count)"])
            let start = ContinuousClock.now
            var fetched = 0
            var lastLog = start
            for piece in pieces {
                if let bytesPerSecond {
                    // Never ahead of the rate: piece k starts no earlier than bytes-so-far / rate.
                    let due = start + .milliseconds(Int64(Double(fetched) / bytesPerSecond * 1000))
                    if due > .now { try await Task.sleep(until: due) }
                }
                let bytes = try await Self.fetch(piece, into: directory, client: client, journal: journal)
                fetched += bytes
                progress.withLock { $0.fetchedBytes += UInt64(bytes) }
                if ContinuousClock.now - lastLog > .seconds(5) {
                    lastLog = .now
                    logger.info("fetching expert weights", metadata: ["done": "\(fetched)", "of": "\(total)"])
                }
            }
            logger.info("fetched expert weights", metadata: ["bytes": "\(total)", "duration": "\(ContinuousClock.now - start)"])
        }
    }

    // MARK: WeightSource

    public var path: String { directory }
    public func modelDescription() throws -> ModelDescription { try inner.modelDescription() }
    public func fingerprint() throws -> String { manifest.fingerprint }
    public func byteCount(of requests: [TensorRequest]) throws -> Int { try inner.byteCount(of: requests) }

    /// Maps the tensors, refusing any with bytes not fetched and verified.
    public func load(_ requests: [TensorRequest]) throws -> TensorSet {
        for request in requests {
            for range in try inner.fileRanges(of: [request]) {
                let missing = journal.missing(range).reduce(0) { $0 + $1.length }
                if missing > 0 { throw ModelMirrorError.missingRanges(tensor: request.name, bytes: missing) }
            }
        }
        return try inner.load(requests)
    }
}

struct FetchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension ModelFileRange {
    /// The range cut into pieces of at most `size` bytes.
    func pieces(of size: Int) -> [ModelFileRange] {
        stride(from: offset, to: end, by: size).map { ModelFileRange(file: file, offset: $0, length: min(size, end - $0)) }
    }
}

/// What has been fetched and verified, per file as sorted disjoint ranges, and the
/// append-only file that keeps it across restarts (`file \t offset \t length \t sha256`).
final class Journal: @unchecked Sendable {
    // @unchecked: `covered` and `handle` are only touched under `lock`.
    private let lock = NSLock()
    private var covered: [String: [Range<Int>]] = [:]
    private let handle: FileHandle
    let path: String
    let verifiedAtStart: UInt64
    let corruptAtStart: UInt64

    /// Reads the journal, re-hashing every listed range against the files; ranges that no
    /// longer match (or lines that are cut or malformed) are dropped and the journal rewritten.
    init(directory: String, manifest: ModelMirrorManifest, logger: Logger) throws {
        path = (directory as NSString).appendingPathComponent(".fetched")
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        var kept: [(ModelFileRange, String)] = []
        var verified: UInt64 = 0, corrupt: UInt64 = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: "\t")
            guard fields.count == 4, let offset = Int(fields[1]), let length = Int(fields[2]), fields[3].count == 64 else { continue }
            let range = ModelFileRange(file: String(fields[0]), offset: offset, length: length)
            guard (try? manifest.read(range, from: directory)).map(ModelMirrorManifest.sha256) == String(fields[3]) else {
                corrupt += UInt64(max(0, length))
                logger.warning("a fetched range no longer matches its hash; fetching it again",
                               metadata: ["file": "\(range.file)", "offset": "\(offset)", "length": "\(length)"])
                continue
            }
            verified += UInt64(length)
            kept.append((range, String(fields[3])))
        }
        let rewritten = kept.map { "\($0.0.file)\t\($0.0.offset)\t\($0.0.length)\t\($0.1)\n" }.joined()
        try Data(rewritten.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        guard let handle = FileHandle(forWritingAtPath: path) else { throw FetchError("cannot open \(path) for writing") }
        _ = try handle.seekToEnd()
        self.handle = handle
        verifiedAtStart = verified
        corruptAtStart = corrupt
        for (range, _) in kept { cover(range) }
        if verified > 0 || corrupt > 0 {
            logger.info("re-verified fetched weights", metadata: ["bytes": "\(verified)", "corrupt_bytes": "\(corrupt)"])
        }
    }

    func record(_ range: ModelFileRange, sha256: String) throws {
        try lock.withLock {
            try handle.write(contentsOf: Data("\(range.file)\t\(range.offset)\t\(range.length)\t\(sha256)\n".utf8))
            try handle.synchronize()
        }
        cover(range)
    }

    private func cover(_ range: ModelFileRange) {
        lock.withLock {
            var list = covered[range.file, default: []]
            var merged = range.offset..<range.end
            list.removeAll { other in
                guard other.overlaps(merged) || other.upperBound == merged.lowerBound || merged.upperBound == other.lowerBound else { return false }
                merged = min(other.lowerBound, merged.lowerBound)..<max(other.upperBound, merged.upperBound)
                return true
            }
            list.append(merged)
            list.sort { $0.lowerBound < $1.lowerBound }
            covered[range.file] = list
        }
    }

    /// The parts of `range` not covered yet.
    func missing(_ range: ModelFileRange) -> [ModelFileRange] {
        let list = lock.withLock { covered[range.file, default: []] }
        var result: [ModelFileRange] = []
        var cursor = range.offset
        for other in list where other.upperBound > cursor && other.lowerBound < range.end {
            if other.lowerBound > cursor { result.append(ModelFileRange(file: range.file, offset: cursor, length: other.lowerBound - cursor)) }
            cursor = max(cursor, other.upperBound)
        }
        if cursor < range.end { result.append(ModelFileRange(file: range.file, offset: cursor, length: range.end - cursor)) }
        return result
    }
}

/// A lock that async code can hold across suspension points.
actor AsyncMutex {
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func withLock<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        while held { await withCheckedContinuation { waiters.append($0) } }
        held = true
        defer {
            held = false
            if !waiters.isEmpty { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}
