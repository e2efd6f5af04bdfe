package podserver

import (
	"encoding/binary"
	"testing"
)

// crc32c is CRC-32C (Castagnoli) bit by bit, from the reflected polynomial,
// independent of hash/crc32's tables.
func crc32c(data []byte) uint32 {
	crc := ^uint32(0)
	for _, b := range data {
		crc ^= uint32(b)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x82F63B78
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

func TestCRC32cReference(t *testing.T) {
	// The check value of CRC-32C.
	if got := crc32c([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("crc32c(123456789) = %#x, want 0xe3069283", got)
	}
}

func TestSCTPInit(t *testing.T) {
	pkt := sctpInit(40000, 5000, 0xDEADBEEF, 0x01020304)
	want := []byte{
		0x9c, 0x40, // source port 40000
		0x13, 0x88, // destination port 5000
		0, 0, 0, 0, // verification tag 0: an INIT
		0, 0, 0, 0, // checksum (compared below)
		1, 0, 0, 20, // chunk type INIT, flags 0, length 20
		0xDE, 0xAD, 0xBE, 0xEF, // initiate tag
		0, 0, 0xff, 0xff, // a_rwnd 65535
		0, 1, 0, 1, // one outbound and one inbound stream
		1, 2, 3, 4, // initial TSN
	}
	if len(pkt) != len(want) {
		t.Fatalf("packet is %d bytes, want %d", len(pkt), len(want))
	}
	for i := range want {
		if i >= 8 && i < 12 {
			continue
		}
		if pkt[i] != want[i] {
			t.Errorf("byte %d = %#x, want %#x\npacket % x", i, pkt[i], want[i], pkt)
		}
	}
	// The checksum is CRC32c over the packet with the checksum field zero,
	// low byte first, as SCTP stores its reflected CRC.
	zeroed := append([]byte(nil), pkt...)
	copy(zeroed[8:12], []byte{0, 0, 0, 0})
	if got, want := binary.LittleEndian.Uint32(pkt[8:12]), crc32c(zeroed); got != want {
		t.Errorf("checksum = %#x, want %#x", got, want)
	}
	// What the receiver (startSCTP) reads back.
	if pkt[12] != 1 || binary.BigEndian.Uint16(pkt[2:4]) != 5000 || binary.BigEndian.Uint32(pkt[16:20]) != 0xDEADBEEF {
		t.Errorf("receiver would read type %d, port %d, tag %#x", pkt[12], binary.BigEndian.Uint16(pkt[2:4]), binary.BigEndian.Uint32(pkt[16:20]))
	}
}
