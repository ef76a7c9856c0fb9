"""Paper titles and years, written once and shared by the zoo modules."""

LENET = ("Gradient-Based Learning Applied to Document Recognition", 1998)
ALEXNET = ("ImageNet Classification with Deep Convolutional Neural Networks", 2012)
VGG = ("Very Deep Convolutional Networks for Large-Scale Image Recognition", 2014)
NIN = ("Network In Network", 2013)
GOOGLENET = ("Going Deeper with Convolutions", 2014)
BN_INCEPTION = (
    "Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
    2015,
)
INCEPTION_V3 = ("Rethinking the Inception Architecture for Computer Vision", 2015)
INCEPTION_V4 = (
    "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
    2016,
)
RESNET = ("Deep Residual Learning for Image Recognition", 2015)
DENSENET = ("Densely Connected Convolutional Networks", 2016)
