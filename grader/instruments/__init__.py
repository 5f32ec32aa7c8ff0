"""Trusted test instruments that checks build inside the student's kernel.

Each module here holds small torch modules whose behaviour the grader knows in closed
form: a critic with a known input gradient, an exact denoiser for Gaussian data, a
generator whose output does not depend on its noise. A check builds one with
``ctx.kernel.instrument(module, name, *args)`` and hands it to the student's functions;
what comes back is checked in the grader's process against the same closed form.

Instruments run in the kernel, so they import nothing but torch, and a module lists the
instruments it offers in ``__all__`` (the kernel refuses any other name).
"""
