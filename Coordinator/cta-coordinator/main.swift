import CTACoordinator

print("cta-coordinator")
