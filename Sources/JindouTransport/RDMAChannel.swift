import CJindouRDMA
import Foundation
import JindouWire
import NIOCore
import Synchronization

/// One end of an RDMA worker link: a reliable-connected queue pair whose frames travel as
/// SENDs with immediate data (`CJindouRDMA`). The frame stream, in exactly the TCP
/// encoding, is cut into SENDs of at most the peer's receive-slot size, written once into
/// registered send slots; each arriving SEND is copied once out of its receive slot into
/// a `FrameStream` and decoded by the TCP `FrameDecoder`, so a corrupt frame is a decoding
/// error, never a crash. Credits (`RDMACreditWindow`) keep a receive posted for every SEND.
///
/// Completions are handled by one thread per link end, which polls the completion queue
/// for a bounded spin and then sleeps on its completion channel.
public final class RDMAChannel: FrameChannel, @unchecked Sendable {
    // @unchecked: `endpoint` is driven from the receiving thread (polls, receives, credit
    // SENDs) and from the one ordered sender (data SENDs); libibverbs' post calls are
    // thread-safe per queue pair; the rest of the state is guarded by `condition`.
    public static let sendQueueDepth = RDMABufferLayout.slotCountRange.upperBound
    public static let defaultSpinNanoseconds: UInt64 = {
        if let text = ProcessInfo.processInfo.environment["JINDOU_RDMA_SPIN_US"], let microseconds = UInt64(text) {
            return microseconds * 1000
        }
        return 20_000
    }()

    public let layout: RDMABufferLayout
    public let local: RDMAConnectionParameters
    let endpoint: OpaquePointer
    let base: UnsafeMutableRawPointer
    let spinNanoseconds: UInt64
    private let writeLock = AsyncFIFOLock()
    private let sendQueue = DispatchQueue(label: "jindou.rdma.send")
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var window: RDMACreditWindow?
    private var sendChunk = 0
    private var freeSendSlots: [Int]
    private let closed = Atomic<Bool>(false)
    private let receiving = Atomic<Bool>(false)

    /// Opens an endpoint on `device` (nil: the first with an active port), registers the
    /// slots of `layout` and posts every receive, so the peer may send as soon as it is
    /// connected. `ip` (this end's address of the link) picks the RoCE v2 GID.
    public init(device: String? = nil, gidIndex: Int? = nil, ip: String? = nil, layout: RDMABufferLayout = .standard,
                spinNanoseconds: UInt64 = defaultSpinNanoseconds) throws(RDMAError) {
        var endpoint: OpaquePointer?
        var address = jindou_rdma_address()
        var message = [CChar](repeating: 0, count: 512)
        let code = jindou_rdma_open(device, 0, Int32(gidIndex ?? -1), ip, layout.totalBytes, UInt32(Self.sendQueueDepth),
                                    UInt32(layout.receiveSlots), &endpoint, &address, &message, message.count)
        guard code == 0, let endpoint else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if RDMADevices.list().isEmpty { throw .noDevice(reason: text) }
            throw .setup(message: text)
        }
        self.endpoint = endpoint
        self.layout = layout
        self.spinNanoseconds = spinNanoseconds
        base = jindou_rdma_buffer(endpoint)
        local = RDMAConnectionParameters(address: address, slotBytes: layout.slotBytes, receiveSlots: layout.receiveSlots)
        freeSendSlots = Array((0..<layout.sendSlots).reversed())
        for slot in 0..<layout.receiveSlots {
            let status = jindou_rdma_post_receive(endpoint, layout.receiveID(slot), layout.receiveOffset(slot), UInt32(layout.slotBytes))
            if status != 0 {
                jindou_rdma_close(endpoint)
                throw .post(operation: "receive", code: status)
            }
        }
    }

    deinit { jindou_rdma_close(endpoint) }

    /// Connects the queue pair to the peer's (validated) parameters: RTR, then RTS.
    public func connect(to remote: RDMAConnectionParameters) throws(RDMAError) {
        try remote.validate()
        var address = remote.address
        var message = [CChar](repeating: 0, count: 512)
        guard jindou_rdma_connect(endpoint, &address, &message, message.count) == 0 else {
            throw .setup(message: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        condition.lock()
        window = RDMACreditWindow(peerReceiveSlots: min(remote.receiveSlots, Self.sendQueueDepth), ownReceiveSlots: layout.receiveSlots)
        sendChunk = min(layout.slotBytes, remote.slotBytes)
        condition.broadcast()
        condition.unlock()
    }

    public var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Moves the queue pair to the error state (outstanding work is flushed, the receiving
    /// thread stops) and wakes waiting senders. The resources are freed with the channel.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        jindou_rdma_shutdown(endpoint)
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    public func send(_ frame: Frame, whileOrdered: () -> Void) async throws {
        let prefix = try FrameEncoder.encodePrefix(frame)
        await writeLock.lock()
        defer { writeLock.unlock() }
        guard !isClosed else { throw RDMAError.closed }
        whileOrdered()
        try await write([prefix, frame.payload])
    }

    /// Packs the buffers' bytes into as few SENDs as the peer's slot size allows.
    private func write(_ buffers: [ByteBuffer]) async throws {
        var slot: (index: Int, immediate: UInt32)?
        var filled = 0
        for buffer in buffers {
            let count = buffer.readableBytes
            var offset = 0
            while offset < count {
                if slot == nil {
                    slot = try await acquireSlot()
                    filled = 0
                }
                let chunk = currentChunk
                let n = min(chunk - filled, count - offset)
                buffer.withUnsafeReadableBytes { bytes in
                    (base + layout.sendOffset(slot!.index) + filled).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
                }
                filled += n
                offset += n
                if filled == chunk {
                    try post(slot!, length: filled)
                    slot = nil
                }
            }
        }
        if let slot {
            if filled > 0 { try post(slot, length: filled) } else { release(slot.index) }
        }
    }

    private var currentChunk: Int {
        condition.lock()
        defer { condition.unlock() }
        return sendChunk
    }

    private func post(_ slot: (index: Int, immediate: UInt32), length: Int) throws {
        let status = jindou_rdma_post_send(endpoint, UInt64(slot.index), layout.sendOffset(slot.index), UInt32(length), slot.immediate)
        if status != 0 {
            release(slot.index)
            close()
            throw RDMAError.post(operation: "send", code: status)
        }
    }

    private func release(_ slot: Int) {
        condition.lock()
        freeSendSlots.append(slot)
        condition.broadcast()
        condition.unlock()
    }

    /// A free send slot and a data credit; waits on a dispatch thread, not the cooperative
    /// pool, while the peer has no receive free or every slot is still in flight.
    private func acquireSlot() async throws -> (index: Int, immediate: UInt32) {
        if let ready = try takeSlot(wait: false) { return ready }
        return try await withCheckedThrowingContinuation { continuation in
            sendQueue.async { [self] in
                continuation.resume(with: Result { try takeSlot(wait: true)! })
            }
        }
    }

    private func takeSlot(wait: Bool) throws -> (index: Int, immediate: UInt32)? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if isClosed { throw RDMAError.closed }
            if window?.canSendData == true, let slot = freeSendSlots.popLast() {
                return (slot, window!.takeForData())
            }
            if !wait { return nil }
            condition.wait(until: Date(timeIntervalSinceNow: 0.1))
        }
    }

    public func startReceiving(maximumPayloadLength: Int, deliver: @escaping @Sendable (InboundFrame) -> Void,
                               idle: @escaping @Sendable () -> Void, finished: @escaping @Sendable ((any Error)?) -> Void) {
        guard !receiving.exchange(true, ordering: .relaxed) else { return }
        let thread = Thread { [self] in
            let error = receiveLoop(maximumPayloadLength: maximumPayloadLength, deliver: deliver, idle: idle)
            close()
            finished(error)
        }
        thread.name = "jindou-rdma-receive"
        thread.start()
    }

    private func receiveLoop(maximumPayloadLength: Int, deliver: (InboundFrame) -> Void, idle: () -> Void) -> RDMAError? {
        var stream = FrameStream(maximumPayloadLength: maximumPayloadLength)
        var completions = [jindou_rdma_completion](repeating: jindou_rdma_completion(), count: 32)
        while !isClosed {
            let count = Int(jindou_rdma_poll(endpoint, &completions, Int32(completions.count), spinNanoseconds, 100))
            if count < 0 { return isClosed ? nil : .setup(message: "polling the completion queue: \(String(cString: strerror(-Int32(count))))") }
            if count == 0 {
                idle()
                continue
            }
            for completion in completions.prefix(count) {
                if let error = handle(completion, into: &stream) { return isClosed ? nil : error }
            }
            condition.lock()
            let update = window?.creditUpdateDue()
            condition.broadcast()
            condition.unlock()
            if let update {
                let status = jindou_rdma_post_send(endpoint, RDMABufferLayout.creditTag, 0, 0, update)
                if status != 0 { return isClosed ? nil : .post(operation: "credit send", code: status) }
            }
            if !stream.deliverFrames(deliver) { return nil }
        }
        return nil
    }

    /// One completion: a receive's bytes go to the stream and its slot is reposted; a send
    /// frees its slot. Anything impossible from a correct peer ends the link.
    private func handle(_ completion: jindou_rdma_completion, into stream: inout FrameStream) -> RDMAError? {
        let receive = completion.kind == Int32(JINDOU_RDMA_COMPLETION_RECEIVE)
        guard completion.status == 0 else {
            return .completion(status: completion.status, operation: receive ? "receive" : "send")
        }
        if receive {
            let slot = Int(completion.wr_id & 0xFFFF_FFFF)
            let length = Int(completion.byte_len)
            guard completion.wr_id & RDMABufferLayout.receiveTag != 0, slot < layout.receiveSlots, length <= layout.slotBytes else {
                return .badParameters(reason: "a receive completed for slot \(slot) with \(length) bytes")
            }
            if length > 0 {
                let source = base + layout.receiveOffset(slot)
                _ = stream.append(capacity: length) { bytes in
                    bytes.baseAddress!.copyMemory(from: source, byteCount: length)
                    return length
                }
            }
            let status = jindou_rdma_post_receive(endpoint, layout.receiveID(slot), layout.receiveOffset(slot), UInt32(layout.slotBytes))
            if status != 0 { return .post(operation: "receive", code: status) }
            condition.lock()
            defer { condition.unlock() }
            do {
                if completion.has_imm != 0 { try window?.returned(completion.imm) }
            } catch {
                return error
            }
            window?.reposted()
        } else if completion.wr_id < UInt64(layout.sendSlots) {
            condition.lock()
            freeSendSlots.append(Int(completion.wr_id))
            condition.unlock()
        }
        return nil
    }
}
