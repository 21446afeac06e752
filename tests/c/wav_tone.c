/*
 * wav_tone FILE FREQ MIN [MS]: exits 0 when the last MS ms (default 1000) of the 16-bit PCM
 * WAV FILE (first channel) have at least MIN (0..1) of their energy at FREQ Hz (Goertzel per
 * 20 ms block, so a phase jump does not count), else 1. tests/c/run.sh uses it on what the
 * softphone example recorded.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

int main(int argc, char **argv) {
    FILE *f;
    unsigned char hdr[12], ch[8], fmt[16];
    uint16_t channels = 0, bits = 0;
    uint32_t rate = 0;
    int16_t *pcm = NULL;
    size_t n = 0, want;
    double freq, min, frac;
    int ms = 1000;

    if (argc < 4) {
        fprintf(stderr, "usage: wav_tone FILE FREQ MIN [MS]\n");
        return 2;
    }
    freq = atof(argv[2]);
    min = atof(argv[3]);
    if (argc > 4) ms = atoi(argv[4]);
    f = fopen(argv[1], "rb");
    if (!f || fread(hdr, 1, 12, f) != 12 || memcmp(hdr, "RIFF", 4) || memcmp(hdr + 8, "WAVE", 4)) {
        fprintf(stderr, "wav_tone: %s is not a WAV file\n", argv[1]);
        return 1;
    }
    while (fread(ch, 1, 8, f) == 8) {
        uint32_t len = le32(ch + 4);
        if (!memcmp(ch, "fmt ", 4) && len >= 16) {
            if (fread(fmt, 1, 16, f) != 16) break;
            channels = le16(fmt + 2);
            rate = le32(fmt + 4);
            bits = le16(fmt + 14);
            if (fseek(f, (long)(len - 16 + (len & 1)), SEEK_CUR) != 0) break;
        } else if (!memcmp(ch, "data", 4)) {
            size_t frames, i;
            unsigned char *raw;
            if (channels == 0 || bits != 16) break;
            frames = len / (2u * channels);
            raw = (unsigned char *)malloc(len ? len : 1);
            pcm = (int16_t *)malloc((frames ? frames : 1) * sizeof(int16_t));
            if (!raw || !pcm) return 1;
            frames = fread(raw, 1, len, f) / (2u * channels);
            for (i = 0; i < frames; i++) pcm[i] = (int16_t)le16(raw + i * 2u * channels);
            n = frames;
            free(raw);
            break;
        } else if (fseek(f, (long)(len + (len & 1)), SEEK_CUR) != 0) {
            break;
        }
    }
    fclose(f);
    if (!pcm || rate == 0) {
        fprintf(stderr, "wav_tone: %s: no 16-bit PCM data\n", argv[1]);
        return 1;
    }
    want = (size_t)rate * (size_t)ms / 1000;
    if (n < want) {
        fprintf(stderr, "wav_tone: %s: only %zu samples at %u Hz (< %d ms)\n", argv[1], n, (unsigned)rate, ms);
        free(pcm);
        return 1;
    }
    frac = tone_fraction(pcm + (n - want), want, freq, rate);
    printf("%s: %.3f of the energy of the last %d ms at %.0f Hz (%zu samples at %u Hz)\n", argv[1], frac, ms,
           freq, n, (unsigned)rate);
    free(pcm);
    return frac >= min ? 0 : 1;
}
