"""Audio in: block-wise decoding, augmentation, the call channel, voice activity and the one segmentation."""
