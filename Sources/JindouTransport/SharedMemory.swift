import CJindouSupport
import Foundation
import JindouWire
import NIOCore
import Synchronization

/// Failures of the shared-memory transport, each naming the object or the problem.
public enum SharedMemoryError: Error, Equatable, CustomStringConvertible {
    case system(operation: String, name: String, code: Int32)
    case notJindouRings(name: String)
    case corrupt(name: String)
    case closed(name: String)

    public var description: String {
        switch self {
        case .system(let operation, let name, let code):
            "\(operation) of shared memory \(name) failed: \(String(cString: strerror(code)))"
        case .notJindouRings(let name):
            "shared memory \(name) does not hold Jindou rings of this layout (wrong magic, version or size)"
        case .corrupt(let name):
            "shared memory \(name): the peer left ring indices that cannot be true; the link is closed"
        case .closed(let name):
            "shared memory \(name) was closed"
        }
    }
}

/// Which end of the rings this process is: the coordinator writes ring 0 and reads ring 1.
public enum SharedMemorySide: Sendable {
    case coordinator, worker

    var sendRing: Int32 { self == .coordinator ? 0 : 1 }
    var receiveRing: Int32 { self == .coordinator ? 1 : 0 }
    var index: Int32 { self == .coordinator ? 0 : 1 }
}

/// This host's identity for choosing shared memory: the kernel's boot id, equal for every
/// process (and network namespace) on one running kernel.
public enum HostIdentity {
    public static let bootID: String = {
        (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
    }()

    /// Whether a worker that reported `hostID` runs on this host.
    public static func isThisHost(_ hostID: String) -> Bool { !bootID.isEmpty && hostID == bootID }
}

/// One end of a shared-memory link: two single-producer single-consumer byte rings in a
/// POSIX shared-memory object (`CJindouSupport/shm_ring.c`), carrying frames in exactly
/// the TCP encoding. A sender writes the frame's prefix and payload once, straight into
/// the ring (waiting for space when a frame is larger than the free part, so any size
/// fits); a receiving thread spins briefly, then sleeps on a futex, copies what arrived
/// into one buffer and runs the TCP `FrameDecoder` over it, so a corrupt entry is a
/// decoding error, never a crash.
public final class SharedMemoryChannel: FrameChannel, @unchecked Sendable {
    // @unchecked: the mapping is shared with another process by design; this process
    // writes only its send ring's data and head and its receive ring's tail, each from one
    // thread at a time (senders hold `writeLock`, the receiving thread is alone).
    public static let defaultRingBytes: UInt64 = 16 << 20
    /// Default spin before sleeping on the futex: a reply that comes within it costs no
    /// system call on either side.
    /// `JINDOU_SHM_SPIN_US` overrides it (0: sleep at once; for machines with few cores,
    /// where a spinning thread takes the core its peer needs).
    public static let defaultSpinNanoseconds: UInt64 = {
        if let text = ProcessInfo.processInfo.environment["JINDOU_SHM_SPIN_US"], let microseconds = UInt64(text) {
            return microseconds * 1000
        }
        return 20_000
    }()

    public let name: String
    public let ringBytes: UInt64
    public let side: SharedMemorySide
    let base: UnsafeMutableRawPointer
    let size: Int
    let spinNanoseconds: UInt64
    private let writeLock = AsyncFIFOLock()
    private let spaceQueue = DispatchQueue(label: "jindou.shm.space")
    private let receiving = Atomic<Bool>(false)

    private init(name: String, base: UnsafeMutableRawPointer, size: Int, ringBytes: UInt64, side: SharedMemorySide,
                 spinNanoseconds: UInt64) {
        self.name = name
        self.base = base
        self.size = size
        self.ringBytes = ringBytes
        self.side = side
        self.spinNanoseconds = spinNanoseconds
    }

    deinit { jindou_shm_unmap(base, size) }

    /// Creates fresh rings under a random name (the coordinator's end).
    public static func create(ringBytes: UInt64 = defaultRingBytes, spinNanoseconds: UInt64 = defaultSpinNanoseconds) throws -> SharedMemoryChannel {
        let name = "/jindou-\(getpid())-" + (0..<4).map { _ in String(UInt32.random(in: .min ... .max), radix: 16) }.joined()
        var base: UnsafeMutableRawPointer?
        var size = 0
        let code = jindou_shm_create(name, ringBytes, &base, &size)
        guard code == 0, let base else { throw SharedMemoryError.system(operation: "creation", name: name, code: code) }
        return SharedMemoryChannel(name: name, base: base, size: size, ringBytes: ringBytes, side: .coordinator,
                                   spinNanoseconds: spinNanoseconds)
    }

    /// Maps rings another process created (the worker's end).
    public static func attach(name: String, spinNanoseconds: UInt64 = defaultSpinNanoseconds) throws -> SharedMemoryChannel {
        var base: UnsafeMutableRawPointer?
        var size = 0
        var ringBytes: UInt64 = 0
        let code = jindou_shm_open(name, &base, &size, &ringBytes)
        if code == EPROTO { throw SharedMemoryError.notJindouRings(name: name) }
        guard code == 0, let base else { throw SharedMemoryError.system(operation: "opening", name: name, code: code) }
        return SharedMemoryChannel(name: name, base: base, size: size, ringBytes: ringBytes, side: .worker,
                                   spinNanoseconds: spinNanoseconds)
    }

    /// Removes the name (the mapping stays valid): once the peer has mapped it, nobody
    /// else can open the rings.
    public func unlink() { _ = jindou_shm_unlink(name) }

    public var isClosed: Bool { jindou_shm_is_closed(base) != 0 }

    /// Marks this end closed and wakes everyone waiting on either end.
    public func close() { jindou_shm_close(base, side.index) }

    /// Writes `frame` into the send ring. Concurrent senders are ordered (first come, first
    /// written); `whileOrdered` runs once this frame's turn has come, before its bytes are
    /// written (a link records the reply it expects there).
    public func send(_ frame: Frame, whileOrdered: () -> Void) async throws {
        let prefix = try FrameEncoder.encodePrefix(frame)
        await writeLock.lock()
        defer { writeLock.unlock() }
        guard !isClosed else { throw SharedMemoryError.closed(name: name) }
        whileOrdered()
        try await write(prefix)
        try await write(frame.payload)
    }

    private func write(_ buffer: ByteBuffer) async throws {
        let count = buffer.readableBytes
        var offset = 0
        while offset < count {
            let written = buffer.withUnsafeReadableBytes { bytes in
                jindou_shm_write(base, ringBytes, side.sendRing, bytes.baseAddress! + offset, count - offset)
            }
            guard written >= 0 else { throw SharedMemoryError.corrupt(name: name) }
            offset += Int(written)
            if offset < count { try await waitForSpace() }
        }
    }

    /// Blocks a dispatch thread, not the cooperative pool, while the peer drains the ring.
    private func waitForSpace() async throws {
        let state: Int32 = await withCheckedContinuation { continuation in
            spaceQueue.async { [self] in
                continuation.resume(returning: jindou_shm_wait(base, ringBytes, side.sendRing, 1, spinNanoseconds, 100))
            }
        }
        switch state {
        case JINDOU_SHM_CLOSED: throw SharedMemoryError.closed(name: name)
        case JINDOU_SHM_CORRUPT: throw SharedMemoryError.corrupt(name: name)
        default: return
        }
    }

    /// Starts the receiving thread (once). `deliver` gets every frame or decoding error in
    /// order; `idle` runs about every 100 ms while nothing arrives (a link checks its
    /// deadlines there); `finished` runs once when the rings close, are found corrupt or a
    /// fatal decoding error loses the stream — the channel is closed by then.
    public func startReceiving(
        maximumPayloadLength: Int = WireProtocol.defaultMaximumPayloadLength,
        deliver: @escaping @Sendable (InboundFrame) -> Void, idle: @escaping @Sendable () -> Void = {},
        finished: @escaping @Sendable ((any Error)?) -> Void
    ) {
        guard !receiving.exchange(true, ordering: .relaxed) else { return }
        let thread = Thread { [self] in
            let error = receiveLoop(maximumPayloadLength: maximumPayloadLength, deliver: deliver, idle: idle)
            close()
            finished(error)
        }
        thread.name = "jindou-shm-receive"
        thread.start()
    }

    private func receiveLoop(maximumPayloadLength: Int, deliver: (InboundFrame) -> Void, idle: () -> Void) -> SharedMemoryError? {
        var stream = FrameStream(maximumPayloadLength: maximumPayloadLength)
        while true {
            switch jindou_shm_wait(base, ringBytes, side.receiveRing, 0, spinNanoseconds, 100) {
            case JINDOU_SHM_READY: break
            case JINDOU_SHM_TIMEOUT:
                idle()
                continue
            case JINDOU_SHM_CORRUPT: return .corrupt(name: name)
            default: return nil  // closed by either end
            }
            let available = Int(jindou_shm_readable(base, ringBytes, side.receiveRing))
            guard available > 0 else { if available < 0 { return .corrupt(name: name) }; continue }
            let read = stream.append(capacity: available) { bytes in
                Int(jindou_shm_read(base, ringBytes, side.receiveRing, bytes.baseAddress!, available))
            }
            if read == 0 { return .corrupt(name: name) }
            if !stream.deliverFrames(deliver) { return nil }
        }
    }

    /// Test hook: writes raw bytes into the send ring, as a broken peer might.
    public func sendRawForTesting(_ bytes: ByteBuffer) async throws {
        await writeLock.lock()
        defer { writeLock.unlock() }
        try await write(bytes)
    }

    /// Test hook: overwrites the receive ring's indices, as a broken peer might.
    public func corruptReceiveRingForTesting() {
        jindou_shm_poke_indices(base, side.receiveRing, UInt64.max, 0)
    }
}

/// A first-come, first-served lock for async code (frames of concurrent senders must not
/// interleave in a ring).
final class AsyncFIFOLock: Sendable {
    private let state = Mutex<(locked: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func lock() async {
        if state.withLock({ state in
            if state.locked { return false }
            state.locked = true
            return true
        }) { return }
        await withCheckedContinuation { continuation in
            let acquired = state.withLock { state in
                if !state.locked {
                    state.locked = true
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if acquired { continuation.resume() }
        }
    }

    func unlock() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
